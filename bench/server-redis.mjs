// For the cross-process fan-out rows (bench/lib/redisfanout.mjs): waits until `n` server
// processes are subscribed to `channel` in Redis, so that a subscriber's hello is echoed (and the
// load client starts publishing) only once every server receives what the others publish.
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'redis';

/** Resolves once `PUBSUB NUMSUB channel` reaches `n` (polling every 5 ms, for up to 30 s). */
export async function redisSubscribers(url, channel, n) {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    for (let i = 0; i < 6000; i++) {
      const [, count] = await client.sendCommand(['PUBSUB', 'NUMSUB', channel]);
      if (Number(count) >= n) return;
      await sleep(5);
    }
    throw new Error(`fewer than ${n} subscribers of ${channel} in Redis after 30 s`);
  } finally {
    await client.disconnect();
  }
}
