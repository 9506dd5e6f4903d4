// An application backend for Switchboard's hooks (docs/hooks.md), in Node.js without
// dependencies: a login page that sets a session cookie, and the hooks that use it.
//
//   node examples/backend/server.mjs            # http://127.0.0.1:3000
//   switchboard serve --config examples/backend/switchboard.toml \
//     --namespace chat:publish_proxy=publish
//
// Log in at http://127.0.0.1:3000/ with any name, then open the demo at
// http://127.0.0.1:8080/: the browser sends the cookie to Switchboard too (cookies do not
// depend on the port), the connect hook names the user, and the publish hook hides words.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';

const port = Number(process.env.PORT ?? 3000);
const WORDS = /\b(darn|heck|drat)\b/gi;

/** Session cookie value → user name. In memory: a real application has its own store. */
const sessions = new Map();

const hooks = {
  // Who a connection without a token is: the user of its session cookie, or a guest.
  '/switchboard/connect': ({ headers }) => {
    const session = /(?:^|;\s*)session=([^;]+)/.exec(headers.cookie ?? '')?.[1];
    const user = sessions.get(session);
    if (!user) return { result: {} };
    return { result: { user, info: { name: user }, channels: ['chat:*'], publish: ['chat:*'] } };
  },
  // Chat messages with the words replaced; anything else as sent.
  '/switchboard/publish': ({ data }) => {
    if (typeof data?.text !== 'string' || !WORDS.test(data.text)) return { result: {} };
    WORDS.lastIndex = 0;
    return { result: { data: { ...data, text: data.text.replace(WORDS, (w) => '*'.repeat(w.length)) } } };
  },
  // One method: who am I.
  '/switchboard/rpc': ({ user, method }) => (method === 'whoami'
    ? { result: { data: { user: user ?? null } } }
    : { error: { code: 'bad_request', message: `no method ${method}` } }),
};

const page = (user) => `<!doctype html><meta charset="utf-8"><title>Log in</title>
<body style="font: 16px system-ui; max-width: 28rem; margin: 4rem auto">
${user ? `<p>Logged in as <b>${escape(user)}</b>. Open <a href="http://127.0.0.1:8080/">the demo</a>.</p>` : ''}
<form method="post" action="/login"><label>Name <input name="user" required maxlength="32"></label>
<button>Log in</button></form>`;

function escape(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function read(req, limit = 64 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('body too large');
  }
  return body;
}

const server = createServer(async (req, res) => {
  try {
    const hook = hooks[req.url];
    if (hook && req.method === 'POST') {
      const answer = hook(JSON.parse(await read(req)));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer));
    } else if (req.url === '/login' && req.method === 'POST') {
      const user = new URLSearchParams(await read(req)).get('user')?.trim().slice(0, 32);
      if (!user) {
        res.writeHead(400).end('a name, please');
        return;
      }
      const session = randomBytes(18).toString('base64url');
      sessions.set(session, user);
      res.writeHead(303, {
        Location: '/',
        'Set-Cookie': `session=${session}; Path=/; HttpOnly; SameSite=Lax`,
      });
      res.end();
    } else if (req.url === '/' && req.method === 'GET') {
      const session = /(?:^|;\s*)session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(page(sessions.get(session)));
    } else {
      res.writeHead(404).end();
    }
  } catch (error) {
    res.writeHead(400, { 'Content-Type': 'text/plain' }).end(String(error.message));
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`backend on http://127.0.0.1:${server.address().port}`);
});
