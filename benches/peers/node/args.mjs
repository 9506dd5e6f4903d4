// Shared by the peer servers: `--port P` from the command line.

export function port() {
  const args = process.argv.slice(2);
  const i = args.indexOf('--port');
  const value = i >= 0 ? Number(args[i + 1]) : NaN;
  if (args.length !== 2 || !Number.isInteger(value) || value <= 0 || value > 65535) {
    console.error('usage: node SERVER.mjs --port P');
    process.exit(2);
  }
  return value;
}

// Largest message accepted, as Switchboard's default --max-message-size.
export const MAX_PAYLOAD = 16 << 20;
