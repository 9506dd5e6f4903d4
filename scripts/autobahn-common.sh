# Shared by the Autobahn scripts: installs wstest when missing and finds a free port.
# shellcheck shell=bash

WSTEST="${WSTEST:-$HOME/.local/bin/wstest}"

ensure_wstest() {
    if [ ! -x "$WSTEST" ]; then
        echo "installing the Autobahn TestSuite (Python 2.7)"
        PYENV_VERSION=2.7.18 python -m pip install --quiet --user autobahntestsuite
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS: until something listens on 127.0.0.1:PORT.
wait_port() {
    local port=$1 deadline=$((SECONDS + $2))
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "nothing listening on 127.0.0.1:$port after $2 s" >&2
            return 1
        fi
        sleep 0.2
    done
}
