// The media-server example end to end: examples/media-server/server.mjs is started in-process
// on port 0, headless Debian Chromium (driven by playwright-core) loads its page from the same
// port, and the page receives video and audio frames over /ws, verifies their checksums, draws
// the video to a canvas and sends input back. Meanwhile a raw TCP client that upgraded on /ws
// and never reads stays connected: the server must hold at most one video frame for it
// (latest frame wins), keep its bufferedAmount bounded, and finally terminate it as hopeless,
// while the browser keeps its frame rate.

import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { start } from '../../examples/media-server/server.mjs';
import { launchChromium } from '../support/chromium.mjs';
import { ARTIFACTS } from '../support/paths.mjs';
import { stalledWsClient } from '../support/raw-ws.mjs';
import { cleanupsAfterEach, exitWatchdog, note } from '../support/suite.mjs';
import { onceEvent, waitFor, withTimeout } from '../support/wait.mjs';
import { WebSocket, wsConnect } from '../support/ws-client.mjs';

const HOST = '127.0.0.1';
const MIN_FRAMES = 60; // valid video frames the page must receive
const MIN_FPS = 20; // the server sends 30; a 2-core machine shared with Chromium must reach this
const STALL_MS = 6000; // the example's stallTimeoutMs in this test

const cleanups = cleanupsAfterEach(test, 10000);

test('one port: the page and its scripts over HTTP, /health, WebSocket upgrades only on /ws', async () => {
  const media = await start({ host: HOST, port: 0 });
  cleanups.push(() => media.stop());
  assert.ok(media.port > 0);
  assert.is(media.url, `http://${HOST}:${media.port}/`);

  const index = await fetch(media.url);
  assert.is(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  const html = await index.text();
  assert.match(html, /<canvas id="screen"/);
  assert.match(html, /src="app.mjs"/);
  for (const file of ['app.mjs', 'protocol.mjs']) {
    const res = await fetch(new URL(file, media.url));
    assert.is(res.status, 200, file);
    assert.match(res.headers.get('content-type'), /^text\/javascript/, file);
    await res.arrayBuffer();
  }
  const health = await fetch(new URL('/health', media.url));
  assert.is(health.status, 200);
  const body = await health.json();
  assert.is(body.status, 'ok');
  const missing = await fetch(new URL('/nothing-here.txt', media.url));
  assert.is(missing.status, 404);
  await missing.arrayBuffer();

  // Upgrades elsewhere than /ws are refused; on /ws the first message is the hello.
  let refused;
  try {
    const ws = await wsConnect(`ws://${HOST}:${media.port}/other`, {}, { protocols: ['acip'] });
    ws.terminate();
  } catch (err) {
    refused = err;
  }
  assert.match(refused?.message ?? 'accepted', /unexpected HTTP response 404/);
  // The listener is attached before 'open': the hello can arrive in the same
  // read as the 101 response, and ws emits it right after 'open'.
  const ws = new WebSocket(`ws://${HOST}:${media.port}/ws`, ['acip']);
  cleanups.push(async () => ws.terminate());
  const helloP = new Promise((resolve) =>
    ws.once('message', (data, isBinary) => resolve({ data, isBinary })),
  );
  await onceEvent(ws, 'open', 5000, 'ws open on /ws');
  const hello = await withTimeout(helloP, 5000, 'hello message');
  assert.is(ws.protocol, 'acip');
  assert.is(hello.isBinary, false);
  const msg = JSON.parse(hello.data.toString());
  assert.is(msg.type, 'hello');
  assert.equal([msg.width, msg.height, msg.fps, msg.sampleRate], [160, 90, 30, 48000]);
});

test('Chromium renders the stream, verifies every frame and drives the picture; a stalled client cannot grow the server', async () => {
  const t0 = performance.now();
  const since = () => `${((performance.now() - t0) / 1000).toFixed(2)} s`;

  const media = await start({ host: HOST, port: 0, stallTimeoutMs: STALL_MS });
  cleanups.push(() => media.stop());
  const rss0 = process.memoryUsage().rss;

  // 1. The stalled client: connected first, so that it is blocked for the whole browser run.
  const slowSock = await stalledWsClient(media.port, {
    path: '/ws?name=stalled',
    headers: { 'Sec-WebSocket-Protocol': 'acip' },
  });
  cleanups.push(async () => slowSock.destroy());
  const slowStats = () => media.stats().clients.find((c) => c.name === 'stalled');
  await waitFor(() => slowStats()?.blocked, {
    timeout: 15000,
    interval: 10,
    label: 'the stalled client to be blocked (bufferedAmount above highWaterMark)',
    describe: () => JSON.stringify(slowStats()),
  });
  const slowAtBlock = slowStats();
  note(
    `stalled client blocked after ${slowAtBlock.connectedMs.toFixed(0)} ms: ` +
      `bufferedAmount ${slowAtBlock.bufferedAmount} B, ${slowAtBlock.dropped} frames dropped`,
  );

  // Sample the server's per-client state all along (20 ms).
  const sampled = { samples: 0, maxBuffered: 0, lastSlow: slowAtBlock };
  const sampler = setInterval(() => {
    const s = slowStats();
    if (!s) return;
    sampled.samples++;
    sampled.maxBuffered = Math.max(sampled.maxBuffered, s.bufferedAmount);
    sampled.lastSlow = s;
  }, 20);
  cleanups.push(async () => clearInterval(sampler));

  // 2. The browser, with a fresh profile directory.
  const browser = await launchChromium({ viewport: { width: 1040, height: 470 } });
  cleanups.push(() => browser.close());
  const { context } = browser;
  note(`chromium launched at ${since()}`);
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  const pageStats = () => page.evaluate(() => window.mediaStats);
  const describePage = async () =>
    `page stats ${JSON.stringify(await pageStats().catch(() => null))}; console: ${consoleLines.join(' | ')}`;

  await page.goto(media.url, { timeout: 15000 });

  // 3. Frames flow: after a warm-up (page load), MIN_FRAMES more valid video frames, with the
  // frame rate measured over them; a second of audio; a few pings answered.
  const WARMUP_FRAMES = 15;
  const waitPage = async (fn, arg, label) => {
    try {
      await page.waitForFunction(fn, arg, { polling: 50, timeout: 20000 });
    } catch (err) {
      throw new Error(`${label}: ${err.message.split('\n')[0]}; ${await describePage()}`);
    }
  };
  await waitPage((n) => window.mediaStats?.video.frames >= n, WARMUP_FRAMES, 'warm-up frames');
  const ps0 = await pageStats();
  await waitPage(
    (min) => {
      const s = window.mediaStats;
      return s.video.frames >= min && s.audio.frames >= 100 && s.rtt.samples >= 3;
    },
    ps0.video.frames + MIN_FRAMES,
    `${MIN_FRAMES} more video frames`,
  );
  const ps = await pageStats();
  const fps = ((ps.video.frames - ps0.video.frames) * 1000) / (ps.video.lastAt - ps0.video.lastAt);
  note(
    `page at ${since()}: ${ps.video.frames} video frames, ${fps.toFixed(1)} fps over the last ` +
      `${ps.video.frames - ps0.video.frames} (last second ${ps.video.fps}), ${ps.video.dropped} dropped, ` +
      `${ps.audio.frames} audio frames, latency avg ${ps.latency.avg.toFixed(2)} ms ` +
      `max ${ps.latency.max.toFixed(2)} ms, rtt ${ps.rtt.last.toFixed(2)} ms ` +
      `(min ${ps.rtt.min.toFixed(2)}), clock offset ${ps.clockOffsetMs.toFixed(3)} ms`,
  );
  assert.ok(ps.connected, 'page connected');
  assert.is(ps.connects, 1, 'one connection, no reconnects');
  assert.is(ps.video.checksumErrors, 0, 'video checksum errors');
  assert.is(ps.audio.checksumErrors, 0, 'audio checksum errors');
  assert.is(ps.audio.badSamples, 0, 'audio frames with samples outside [-1, 1]');
  assert.is(ps.protocolErrors, 0, 'malformed messages');
  assert.ok(ps.video.frames >= WARMUP_FRAMES + MIN_FRAMES);
  assert.ok(fps >= MIN_FPS, `video at ${fps.toFixed(1)} fps, expected >= ${MIN_FPS}`);
  assert.ok(ps.audio.frames >= 100, `audio frames: ${ps.audio.frames}`);
  assert.ok(
    ps.rtt.samples >= 3 && ps.rtt.last > 0 && ps.rtt.last < 1000,
    `rtt ${JSON.stringify(ps.rtt)}`,
  );
  assert.ok(
    Number.isFinite(ps.latency.avg) && ps.latency.avg < 500,
    `latency ${JSON.stringify(ps.latency)}`,
  );

  // The server's view of the page: audio never dropped, pings seen, its own round trip measured.
  const browserStats = () => media.stats().clients.find((c) => c.id === ps.clientId);
  await waitFor(() => browserStats()?.serverRttMs != null, {
    timeout: 5000,
    label: "the server's own round trip to the page (sping/spong)",
    describe: () => JSON.stringify(browserStats()),
  });
  let bs = browserStats();
  assert.is(bs.name, 'page');
  assert.match(bs.userAgent, /Chrome/);
  assert.is(bs.dropped, 0, 'the server dropped nothing (audio or video) for the page');
  assert.ok(bs.pings >= 3, `server saw ${bs.pings} pings`);
  assert.ok(bs.rttMs > 0, 'the page reports its round trip to the server');
  assert.ok(
    ps.audio.dropped <= media.stats().lateAudio,
    `page saw ${ps.audio.dropped} audio gaps; the server was late for ${media.stats().lateAudio}`,
  );

  // 4. Input: move the mouse over the picture; the server must see it and draw our cursor.
  const box = await page.locator('#screen').boundingBox();
  await page.mouse.move(box.x + box.width * 0.75, box.y + box.height * 0.3, { steps: 4 });
  await waitFor(
    () => {
      const c = browserStats()?.cursor;
      return c && Math.abs(c.x - 0.75) < 0.02 && Math.abs(c.y - 0.3) < 0.02;
    },
    {
      timeout: 5000,
      label: 'the server to see the pointer input',
      describe: () => JSON.stringify(browserStats()),
    },
  );
  // Arrow key: the cursor moves left by 0.04.
  await page.locator('#screen').focus();
  const xBefore = browserStats().cursor.x;
  await page.keyboard.press('ArrowLeft');
  await waitFor(() => browserStats().cursor.x < xBefore - 0.03, {
    timeout: 5000,
    label: 'the server to see the arrow key',
    describe: () => JSON.stringify(browserStats()),
  });
  bs = browserStats();
  assert.ok(bs.inputs >= 2, `server saw ${bs.inputs} inputs`);
  // The page: the server acknowledged our inputs in a pong, and the canvas shows our cursor
  // (in our colour) where the server says it is.
  const cx = Math.round(bs.cursor.x * 159);
  const cy = Math.round(bs.cursor.y * 89);
  try {
    await page.waitForFunction(
      ({ x, y, color, inputs }) => {
        const s = window.mediaStats;
        const ctx = document.getElementById('screen').getContext('2d');
        const p = ctx.getImageData(x, y, 1, 1).data;
        return (
          s.serverInputs >= inputs && p[0] === color[0] && p[1] === color[1] && p[2] === color[2]
        );
      },
      { x: cx, y: cy, color: bs.color, inputs: bs.inputs },
      { polling: 50, timeout: 5000 },
    );
  } catch (err) {
    throw new Error(
      `the canvas does not show the cursor at ${cx},${cy} in ${bs.color}: ${err.message.split('\n')[0]}; ${await describePage()}`,
    );
  }
  // The picture is animated: two snapshots of the canvas differ.
  const snapshot = () =>
    page.evaluate(() => {
      const c = document.getElementById('screen');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let h = 0x811c9dc5;
      for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 0x01000193);
      return { hash: h >>> 0, frame: window.mediaStats.video.lastSeq };
    });
  const snap1 = await snapshot();
  await page.waitForFunction((seq) => window.mediaStats.video.lastSeq >= seq + 2, snap1.frame, {
    polling: 20,
    timeout: 5000,
  });
  const snap2 = await snapshot();
  assert.is.not(snap1.hash, snap2.hash, 'the canvas changes from frame to frame');

  // 5. Screenshot (test-artifacts/ is gitignored), once the stats table shows the acknowledged
  // inputs (it is refreshed four times a second).
  await page.waitForFunction(
    (inputs) => {
      const m = /inputs sent \/ seen(\d+) \/ (\d+)/.exec(
        document.getElementById('stats').textContent,
      );
      return m && Number(m[2]) >= inputs;
    },
    bs.inputs,
    { polling: 50, timeout: 5000 },
  );
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'media-server.png');
  await page.screenshot({ path: shot, timeout: 10000 });
  const png = fs.readFileSync(shot);
  assert.ok(png.length > 1000, `screenshot is ${png.length} bytes`);
  assert.is(png.subarray(1, 4).toString('latin1'), 'PNG');

  // 6. The stalled client, all along: its bufferedAmount bounded by the audio limit (the
  // connection's maxBackpressure), frames dropped for it instead of queued.
  const s = media.stats();
  const slow = slowStats() ?? sampled.lastSlow;
  const bound = s.audioLimitBytes;
  note(
    `stalled client at ${since()}: ${sampled.samples} samples, bufferedAmount max ` +
      `${slow.maxBufferedAmount} B (bound ${bound}), ${slow.dropped} frames dropped`,
  );
  assert.ok(sampled.samples > 10, 'sampled the stalled client');
  assert.ok(slow.dropped > 0, 'latest frame wins: frames were dropped, not queued');
  assert.ok(sampled.maxBuffered <= bound, `sampled bufferedAmount ${sampled.maxBuffered}`);
  assert.ok(slow.maxBufferedAmount <= bound, `bufferedAmount ${slow.maxBufferedAmount}`);

  // 7. Hopeless: the stalled client is terminated after stallTimeoutMs; the page keeps going.
  const framesBefore = (await pageStats()).video.frames;
  await waitFor(() => media.stats().kicked >= 1 && !slowStats(), {
    timeout: STALL_MS + 5000,
    interval: 20,
    label: 'the stalled client to be terminated as hopeless',
    describe: () => JSON.stringify(slowStats()),
  });
  await page.waitForFunction((n) => window.mediaStats.video.frames >= n + 10, framesBefore, {
    polling: 50,
    timeout: 5000,
  });
  const end = await pageStats();
  const rss1 = process.memoryUsage().rss;
  note(
    `end at ${since()}: page ${end.video.frames} frames, ${end.video.dropped} dropped, ` +
      `${end.video.checksumErrors + end.audio.checksumErrors} checksum errors ` +
      `(server: ${media.stats().lateVideo} video frames skipped for a late timer, ` +
      `${browserStats()?.dropped} dropped for a full buffer), ` +
      `latency avg ${end.latency.avg.toFixed(2)} ms, rtt min ${end.rtt.min.toFixed(2)} ms; ` +
      `test process rss ${(rss0 / 2 ** 20).toFixed(0)} -> ${(rss1 / 2 ** 20).toFixed(0)} MiB; screenshot ${shot}`,
  );
  assert.is(end.video.checksumErrors + end.audio.checksumErrors, 0, 'checksum errors');
  assert.is(end.connects, 1, 'the page never reconnected');
});

test.after(exitWatchdog);
test.run();
