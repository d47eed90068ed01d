// textAs: 'buffer' delivers text messages as Buffers (isBinary false), as ws does,
// and send(buffer, false) sends a Buffer as text: an echo without UTF-8 decoding.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as lws from '../dist/index.mjs';
import { captureRejection, withTimeout } from './support/wait.mjs';

const HOST = '127.0.0.1';

test("textAs: 'buffer' on server and client: Buffers both ways, text frames on the wire", async () => {
  const server = await lws.listen({ host: HOST, port: 0, textAs: 'buffer' });
  const seen = [];
  server.on('connection', (c) =>
    c.on('message', (d, b) => {
      seen.push([Buffer.isBuffer(d), b]);
      c.send(d, b);
    }),
  );
  try {
    const asString = await lws.connect(`ws://${HOST}:${server.port}/`);
    const asBuffer = await lws.connect(`ws://${HOST}:${server.port}/`, { textAs: 'buffer' });
    for (const text of ['héllo ✓', '', 'x'.repeat(40000)]) {
      const r1 = new Promise((r) => asString.once('message', (d, b) => r([d, b])));
      asString.send(text);
      assert.equal(await withTimeout(r1, 5000, 'string echo'), [text, false]);
      const r2 = new Promise((r) => asBuffer.once('message', (d, b) => r([d, b])));
      asBuffer.send(text);
      const [d, b] = await withTimeout(r2, 5000, 'buffer echo');
      assert.ok(Buffer.isBuffer(d), 'textAs buffer gives a Buffer');
      assert.is(b, false, 'still a text message');
      assert.is(d.toString(), text);
    }
    assert.ok(
      seen.every(([isBuf, isBin]) => isBuf && !isBin),
      JSON.stringify(seen),
    );
    asString.close();
    asBuffer.close();
  } finally {
    await server.close();
  }
});

test('textAs is validated', async () => {
  const err = await captureRejection(
    () => lws.listen({ host: HOST, textAs: 'blob' }),
    5000,
    'bad textAs',
  );
  assert.instance(err, TypeError);
  assert.is(err.code, 'ERR_INVALID_ARG_VALUE');
});

test('text as strings: ASCII and non-ASCII, in the shared buffer and handed over, deflated or not', async () => {
  // ASCII text is decoded as one-byte (no UTF-8 pass); a message with any byte >= 0x80 is not.
  const texts = [
    'plain ascii',
    'x'.repeat(16 * 1024), // the largest message in the shared buffer
    'y'.repeat(16 * 1024 + 1), // handed over as its own string
    'é',
    `${'a'.repeat(16 * 1024 - 2)}é`, // the one non-ASCII character is the last one
    `ü${'b'.repeat(70_000)}`,
    'control \u0001 and DEL \u007f stay ASCII',
  ];
  for (const perMessageDeflate of [false, true]) {
    const server = await lws.listen({ host: HOST, port: 0, perMessageDeflate });
    const got = [];
    const all = new Promise((resolve) =>
      server.on('connection', (c) =>
        c.on('message', (d, b) => {
          got.push([d, b]);
          if (got.length === texts.length) resolve();
        }),
      ),
    );
    try {
      const client = await lws.connect(`ws://${HOST}:${server.port}/`, { perMessageDeflate });
      for (const t of texts) client.send(t);
      await withTimeout(all, 5000, 'every message');
      assert.equal(
        got.map(([d]) => d),
        texts,
        `deflate ${perMessageDeflate}`,
      );
      assert.ok(
        got.every(([d, b]) => typeof d === 'string' && b === false),
        'strings, text',
      );
      client.close();
    } finally {
      await server.close();
    }
  }
});

test.run();
