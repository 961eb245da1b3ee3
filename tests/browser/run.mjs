// Browser tests of the web UI: real `peerconnect up` nodes, Debian's Chromium
// driven by playwright-core. Run by scripts/test (which installs both), or:
//   node tests/browser/run.mjs            (after `cargo build -p peerconnect-cli`)
// Screenshots of every view, at phone (360 px) and desktop widths, go to
// tests/browser/out/ (or $SCREENSHOTS).

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHROMIUM, UpNode, launch, makeNamespaces, netnsUnavailable, tempDir } from './lib/env.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const BIN = process.env.PEERCONNECT_BIN || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug/peerconnect');
const OUT = process.env.SCREENSHOTS || join(here, 'out');
const T = 20000;

const results = [];
let failed = false;

async function step(name, fn) {
  if (failed) {
    results.push({ name, ok: false, skipped: true });
    console.log(`SKIP ${name} (an earlier step failed)`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed = true;
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n${e.stack || e}`);
    // What each page showed when it failed.
    for (const [label, page] of Object.entries(pages)) {
      await page.screenshot({ path: join(OUT, `FAILED-${label}.png`) }).catch(() => {});
      const toasts = await page.locator('.toast').allTextContents().catch(() => []);
      if (toasts.length) console.log(`  ${label} page says: ${toasts.join(' | ')}`);
    }
  }
}

/** Pages by name, for failure screenshots. */
const pages = {};

function skip(name, why) {
  results.push({ name, ok: true, skipped: true });
  console.log(`SKIPPED ${name}: ${why}`);
}

const check = (cond, msg) => { if (!cond) throw new Error(msg); };

const VIEWPORTS = { phone: { width: 360, height: 740 }, desktop: { width: 1280, height: 800 } };

/** Saves `name-phone.png` and `name-desktop.png` of the page as it is. */
async function shoot(page, name, { dark = false } = {}) {
  const before = page.viewportSize();
  // Toasts come and go: leave them out of the pictures.
  await page.evaluate(() => document.querySelectorAll('.toast').forEach((t) => t.remove()));
  if (dark) await page.emulateMedia({ colorScheme: 'dark' });
  for (const [size, vp] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(vp);
    await page.waitForTimeout(150); // one layout and paint after the resize
    await page.screenshot({ path: join(OUT, `${name}-${size}${dark ? '-dark' : ''}.png`) });
  }
  if (dark) await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize(before);
}

const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Clicks a download link and returns the downloaded bytes. */
async function download(page, link) {
  const [dl] = await Promise.all([page.waitForEvent('download'), link.click()]);
  return readFileSync(await dl.path());
}

/** Status of a same-origin fetch made by the page itself. */
const fetchStatus = (page, path, init) =>
  page.evaluate(async ([p, i]) => (await fetch(p, i)).status, [path, init || {}]);

async function main() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build -p peerconnect-cli\` first`);
  if (!existsSync(CHROMIUM)) {
    skip('browser tests', `${CHROMIUM} is not installed (apt-get install chromium)`);
    return;
  }
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const work = tempDir();
  const why = netnsUnavailable();
  let ns = null;
  if (why) console.log(`SKIPPED the guest steps: ${why}; the owner steps run on 127.0.0.1`);
  else ns = makeNamespaces();
  const nodes = [];
  const browsers = [];
  const clis = [];
  try {
    const a = new UpNode(BIN, ns?.s, 'alpha', ['--listen', '127.0.0.1:0', '--web', '127.0.0.1:0']);
    nodes.push(a);
    // B's web UI also listens on its namespace's LAN address, for the guest.
    const b = new UpNode(BIN, ns?.s, 'beta', ['--listen', '127.0.0.1:0', '--web', ns ? '0.0.0.0:0' : '127.0.0.1:0']);
    nodes.push(b);
    await a.ready();
    await b.ready();
    const owner = await launch(ns?.s, work);
    browsers.push(owner);
    const ctxA = await owner.newContext({ viewport: VIEWPORTS.desktop, acceptDownloads: true });
    const ctxB = await owner.newContext({ viewport: VIEWPORTS.desktop, acceptDownloads: true });
    const pa = await ctxA.newPage();
    const pb = await ctxB.newPage();
    Object.assign(pages, { A: pa, B: pb });
    for (const [p, n] of [[pa, 'A'], [pb, 'B']]) {
      p.setDefaultTimeout(T);
      p.on('pageerror', (e) => { console.log(`page ${n} error: ${e.message}`); failed = true; });
      p.on('dialog', (d) => d.accept());
    }

    await step("loopback without the owner link gets the PIN page, not the owner's UI", async () => {
      await pa.goto(`${a.webUrl}#peers`);
      await pa.locator('#pin').waitFor();
    });

    await step("the owner link opens the owner's page without a PIN, no devices yet", async () => {
      // The link `up` printed sets the owner cookie and leads to the UI.
      await pa.goto(a.ownerUrl);
      await pb.goto(b.ownerUrl);
      await pa.goto(`${a.webUrl}#peers`);
      await pa.locator('.link-state.live').waitFor();
      await pa.getByText('No devices found yet.').waitFor();
      await pb.goto(`${b.webUrl}#peers`);
      await pb.locator('.link-state.live').waitFor();
      await shoot(pa, 'peers-empty');
    });

    await step("connecting by address lists each node in the other's page, live", async () => {
      await pa.fill('#connect-addr', b.addr);
      await pa.getByRole('button', { name: 'Connect', exact: true }).click();
      await pa.locator(`.peer[data-id="${b.id}"] .status.on`).waitFor();
      // B's page was open already: the WebSocket brought A in.
      await pb.locator(`.peer[data-id="${a.id}"] .status.on`).waitFor();
      const codeA = await pa.locator(`.peer[data-id="${b.id}"] .peer-code b`).textContent();
      const codeB = await pb.locator(`.peer[data-id="${a.id}"] .peer-code b`).textContent();
      check(/^\d{3} \d{3}$/.test(codeA) && codeA === codeB, `verification codes differ: ${codeA} vs ${codeB}`);
    });

    await step('trusting a peer shows it as trusted', async () => {
      await pa.getByRole('button', { name: 'Trust beta' }).click();
      await pa.locator(`.peer[data-id="${b.id}"] .badge.trust-trusted`).waitFor();
      await shoot(pa, 'peers');
      await shoot(pa, 'peers', { dark: true });
    });

    await step('the two pages chat', async () => {
      await pa.getByRole('button', { name: 'Chat with beta' }).click();
      await pa.locator('#view-chat .composer-input').fill('Hello beta, this is alpha');
      await pa.keyboard.press('Enter');
      await pa.locator('.msg.out .bubble', { hasText: 'Hello beta' }).waitFor();
      await pa.locator('.msg.out .mstatus.delivered, .msg.out .mstatus.read').first().waitFor();
      await pb.goto(`${b.webUrl}#chat`);
      await pb.locator('.conv', { hasText: 'alpha' }).click();
      await pb.locator('.msg.in .bubble', { hasText: 'Hello beta, this is alpha' }).waitFor();
      await pb.locator('#view-chat .composer-input').fill('Hi alpha! Got it.');
      await pb.getByRole('button', { name: 'Send', exact: true }).click();
      await pa.locator('.msg.in .bubble', { hasText: 'Hi alpha! Got it.' }).waitFor();
      // B's page showed A's message: A sees it read.
      await pa.locator('.msg.out .mstatus.read').first().waitFor();
      await shoot(pa, 'chat');
      await shoot(pa, 'chat', { dark: true });
    });

    await step('both pages join a room and each sees the other\'s message with its name', async () => {
      for (const p of [pa, pb]) {
        await p.goto(`${p === pa ? a.webUrl : b.webUrl}#rooms`);
        await p.fill('.room-join input', 'lobby');
        await p.getByRole('button', { name: 'Join', exact: true }).click();
        await p.locator('.thread-head h2', { hasText: 'lobby' }).waitFor();
      }
      // Each node must see the other as a member before a message can travel.
      await pa.waitForFunction(async () => {
        const r = await (await fetch('/api/rooms')).json();
        return r.some((x) => x.name === 'lobby' && x.neighbors > 0);
      }, null, { polling: 200, timeout: T });
      await pa.locator('#view-rooms .composer-input').fill('Hello room from alpha');
      await pa.keyboard.press('Enter');
      await pa.locator('#view-rooms .msg.out .bubble', { hasText: 'Hello room from alpha' }).waitFor();
      const inB = pb.locator('#view-rooms .msg.in', { hasText: 'Hello room from alpha' });
      await inB.waitFor();
      check((await inB.locator('.msg-author').textContent()).startsWith('alpha'), 'the author name is missing');
      await pb.locator('#view-rooms .composer-input').fill('beta here too');
      await pb.getByRole('button', { name: 'Send', exact: true }).click();
      await pa.locator('#view-rooms .msg.in .bubble', { hasText: 'beta here too' }).waitFor();
      await shoot(pa, 'rooms');
    });

    await step("A's room view shares a file with the room; B accepts it and gets the same bytes", async () => {
      const slides = { name: 'slides.bin', mimeType: 'application/octet-stream', buffer: randomBytes(256 << 10) };
      await pa.locator('#view-rooms .thread-head h2', { hasText: 'lobby' }).waitFor();
      await pa.setInputFiles('#view-rooms input[type=file]', [slides]);
      await pa.locator('.toast', { hasText: 'Sharing 1 file with 1 member of lobby' }).waitFor();
      await pb.goto(`${b.webUrl}#transfers`);
      const offer = pb.locator('.transfer.offer', { hasText: 'alpha wants to send you 1 file' });
      await offer.waitFor();
      await offer.getByRole('button', { name: /Accept/ }).click();
      const link = pb.locator('.received-file', { hasText: 'slides.bin' }).getByRole('link', { name: /Download/ });
      await link.waitFor();
      const got = await download(pb, link);
      check(sha(got) === sha(slides.buffer), `slides.bin differs after the room share (${got.length} bytes)`);
    });

    // Files made here, compared byte for byte after their trip.
    const photo = { name: 'photo.bin', mimeType: 'application/octet-stream', buffer: randomBytes(3 << 20) };
    const notes = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('PeerConnect notes\n'.repeat(500)) };

    await step("A's page sends two files to B; B's page accepts; B's download is byte-identical", async () => {
      await pa.goto(`${a.webUrl}#peers`);
      await pa.getByRole('button', { name: 'Send files to beta' }).click();
      await pa.locator('#view-send').waitFor();
      await pa.setInputFiles('#send-files', [photo, notes]);
      await pa.locator('.picked li', { hasText: 'photo.bin' }).waitFor();
      check(await pa.isChecked(`#to-${b.id}`), 'beta is not preselected');
      await shoot(pa, 'send');
      await pb.goto(`${b.webUrl}#transfers`);
      await pa.getByRole('button', { name: /^Send 2 files to 1 device/ }).click();
      const offer = pb.locator('.transfer.offer', { hasText: 'alpha wants to send you 2 files' });
      await offer.waitFor();
      await shoot(pb, 'offer');
      await offer.getByRole('button', { name: /Accept/ }).click();
      const link = pb.locator('.received-file', { hasText: 'photo.bin' }).getByRole('link', { name: /Download/ });
      await link.waitFor();
      const got = await download(pb, link);
      check(sha(got) === sha(photo.buffer), `photo.bin differs after the transfer (${got.length} bytes)`);
      const got2 = await download(pb, pb.locator('.received-file', { hasText: 'notes.txt' }).getByRole('link', { name: /Download/ }));
      check(sha(got2) === sha(notes.buffer), 'notes.txt differs after the transfer');
      await pa.locator('#view-send .transfer.state-complete').waitFor();
      await shoot(pa, 'send-done');
      await shoot(pb, 'transfers');
      await shoot(pb, 'transfers', { dark: true });
    });

    await step('a folder (picked or dropped) keeps its structure on the way', async () => {
      const dir = join(work, 'Album');
      mkdirSync(join(dir, 'day 2'), { recursive: true });
      writeFileSync(join(dir, 'cover.txt'), 'cover');
      writeFileSync(join(dir, 'day 2', 'näht.txt'), 'second day');
      await pa.goto(`${a.webUrl}#send`);
      await pa.setInputFiles('#send-folder', dir);
      await pa.locator('.picked li', { hasText: 'Album/day 2/näht.txt' }).waitFor();
      // A drop of a plain file adds to the list.
      await pa.evaluate(() => {
        const dt = new DataTransfer();
        dt.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
        document.querySelector('#send-zone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
      });
      await pa.locator('.picked li', { hasText: 'dropped.txt' }).waitFor();
      await pa.getByRole('button', { name: /^Send 3 files to 1 device/ }).click();
      await pb.goto(`${b.webUrl}#transfers`);
      const offer = pb.locator('.transfer.offer', { hasText: 'alpha wants to send you 3 files' });
      await offer.waitFor();
      check(await offer.getByText('Album/day 2/näht.txt').isVisible(), 'the folder path is not in the offer');
      await offer.getByRole('button', { name: /Accept/ }).click();
      const link = pb.locator('.received-file', { hasText: 'näht.txt' }).getByRole('link', { name: /Download/ });
      await link.waitFor();
      check((await download(pb, link)).toString() === 'second day', 'näht.txt differs');
      const where = await pb.locator('.received-file', { hasText: 'näht.txt' }).locator('.file-name').getAttribute('title');
      check(where.endsWith('/Album/day 2/näht.txt'), `received at ${where}`);
      // Both sides show it finished, also after a reload (the node's list agrees).
      await pb.locator('.transfer.state-complete', { hasText: 'dropped.txt' }).waitFor();
      await pb.reload();
      await pb.locator('.transfer.state-complete', { hasText: '3 files' }).waitFor();
    });

    await step('the settings view shows the PIN and saves a name for the next start', async () => {
      await pa.goto(`${a.webUrl}#settings`);
      await pa.locator('.pin', { hasText: a.pin }).waitFor();
      await pa.fill('#set-name', 'alpha-renamed');
      await pa.getByRole('button', { name: 'Save' }).click();
      await pa.getByText('takes effect when PeerConnect restarts').waitFor();
      await shoot(pa, 'settings');
      await pa.fill('#set-name', 'alpha');
      await pa.getByRole('button', { name: 'Save' }).click();
    });

    await step('every view is reachable with the keyboard alone', async () => {
      await pa.goto(`${a.webUrl}#peers`);
      await pa.reload();
      await pa.locator('.link-state.live').waitFor();
      await pa.keyboard.press('Tab');
      check(await pa.evaluate(() => document.activeElement.classList.contains('skip')),
        'the first Tab does not reach the skip link');
      const onTab = (name) => pa.evaluate((n) => document.activeElement?.dataset?.view === n, name);
      for (let i = 0; i < 30 && !(await onTab('transfers')); i++) await pa.keyboard.press('Tab');
      check(await onTab('transfers'), 'Tab never reaches the Transfers tab');
      const ring = await pa.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      check(ring !== 'none', 'the focused tab shows no focus ring');
      await pa.keyboard.press('Enter');
      await pa.locator('#view-transfers').waitFor();
      check(await pa.isHidden('#view-peers'), 'Enter on the Transfers tab did not switch views');
    });

    if (!ns) {
      skip('a browser guest from another address', why);
    } else {
      const guestBrowser = await launch(ns.g, work);
      browsers.push(guestBrowser);
      const gctx = await guestBrowser.newContext({ viewport: VIEWPORTS.phone, acceptDownloads: true });
      const pg = await gctx.newPage();
      pages.guest = pg;
      pg.setDefaultTimeout(T);
      pg.on('pageerror', (e) => { console.log(`guest page error: ${e.message}`); failed = true; });
      const lanUrl = `http://${ns.sIp}:${new URL(b.webUrl).port}/`;

      await step('a guest browser without the PIN gets 401 from the API', async () => {
        await pg.goto(lanUrl);
        await pg.locator('#pin').waitFor();
        for (const path of ['/api/peers', '/api/guest/messages', '/api/conversations']) {
          const s = await fetchStatus(pg, path);
          check(s === 401, `${path} answered ${s}, not 401`);
        }
        const s = await fetchStatus(pg, '/api/guest/messages', {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text":"x"}',
        });
        check(s === 401, `POST answered ${s}, not 401`);
        await shoot(pg, 'guest-login');
      });

      await step('a wrong PIN is refused, the right one lets the guest in', async () => {
        const wrong = b.pin === '000000' ? '000001' : '000000';
        await pg.fill('#pin', wrong);
        await pg.fill('#guest-name', 'Test phone');
        await pg.getByRole('button', { name: 'Connect' }).click();
        await pg.getByText('wrong PIN').waitFor();
        await pg.fill('#pin', b.pin);
        await pg.getByRole('button', { name: 'Connect' }).click();
        await pg.locator('.link-state.live').waitFor();
        const cookies = await gctx.cookies();
        const c = cookies.find((x) => x.name === 'pc_session');
        check(c && c.httpOnly && c.sameSite === 'Strict', `session cookie: ${JSON.stringify(c)}`);
        // The owner sees the guest as a browser device, connected.
        await pb.goto(`${b.webUrl}#peers`);
        await pb.locator('.peer', { hasText: 'Test phone' }).locator('.avatar.kind-browser').waitFor();
        await pb.locator('.peer', { hasText: 'Test phone' }).locator('.status.on').waitFor();
      });

      await step('the guest and the owner chat', async () => {
        await pg.goto(`${lanUrl}#chat`);
        await pg.locator('.composer-input').fill('Hello from the phone');
        await pg.keyboard.press('Enter');
        await pb.goto(`${b.webUrl}#chat`);
        await pb.locator('.conv', { hasText: 'Test phone' }).click();
        await pb.locator('.msg.in .bubble', { hasText: 'Hello from the phone' }).waitFor();
        await pb.locator('#view-chat .composer-input').fill('Welcome, phone');
        await pb.keyboard.press('Enter');
        await pg.locator('.msg.in .bubble', { hasText: 'Welcome, phone' }).waitFor();
        await shoot(pg, 'guest-chat');
      });

      await step('a guest joins a room and talks with a node that ran `peerconnect room join`', async () => {
        // Node A's owner follows the room from the command line. (B's owner
        // is not in this room: B joins it for its guest only.)
        const watch = a.cli(['room', 'join', 'hallway', '--json']);
        clis.push(watch);
        await watch.waitFor((e) => e.event === 'room_joined' && e.room === 'hallway', "room join's room_joined");
        await pg.goto(`${lanUrl}#rooms`);
        await pg.fill('.room-join input', 'hallway');
        await pg.getByRole('button', { name: 'Join', exact: true }).click();
        await pg.locator('.thread-who h2', { hasText: 'hallway' }).waitFor();
        await pg.locator('.composer-input:visible').fill('Hello room from the phone');
        await pg.keyboard.press('Enter');
        await pg.locator('.msg.out .bubble', { hasText: 'Hello room from the phone' }).waitFor();
        // The guest's node published it for the guest, under the guest's name.
        const got = await watch.waitFor(
          (e) => e.event === 'room_message' && e.message.text === 'Hello room from the phone',
          "the guest's message at A's `room join`");
        check(got.message.author === b.id, `author ${got.message.author}, not B ${b.id}`);
        check(got.message.author_name === 'Test phone (guest via beta)', `author_name ${got.message.author_name}`);
        // `room say` on A: the guest's page shows it live.
        const say = a.cli(['room', 'say', 'hallway', 'Hello phone, this is alpha']);
        say.stdin.end();
        check(await say.done === 0, '`peerconnect room say` failed');
        const answer = pg.locator('.msg.in', { hasText: 'Hello phone, this is alpha' });
        await answer.waitFor();
        check((await answer.locator('.msg-author').textContent()) === 'alpha', 'the answer does not name alpha');
        await shoot(pg, 'guest-room');
        // The guest leaves; B was in the room only for it, so B leaves too.
        await pg.locator('.rooms-view button.leave').click();
        await b.waitFor((e) => e.event === 'room_left' && e.room === 'hallway', "B's room_left");
        watch.stdin.end();
        check(await watch.done === 0, '`peerconnect room join` did not end cleanly at end of input');
      });

      const video = { name: 'holiday.mp4', mimeType: 'video/mp4', buffer: randomBytes(6 << 20) };
      await step('the guest uploads files, the owner accepts, and sees it in progress', async () => {
        check(await fetchStatus(pg, '/api/guest/offers', {
          method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'omit',
          body: JSON.stringify({ entries: [{ path: 'x', size: 1, dir: false }] }),
        }) === 401, 'an offer without the session cookie was not refused');
        // A slow uplink (DevTools throttling) keeps the upload in progress
        // long enough to look at it.
        const cdp = await gctx.newCDPSession(pg);
        await cdp.send('Network.enable');
        await cdp.send('Network.emulateNetworkConditions', {
          offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: Number(process.env.UPLOAD_BPS || (1 << 20)),
        });
        await pg.goto(`${lanUrl}#send`);
        await pg.setInputFiles('#gsend-files', [video, notes]);
        await pg.getByRole('button', { name: 'Send 2 files' }).click();
        await pg.locator('.transfer', { hasText: 'Waiting for an answer' }).waitFor();
        await pb.goto(`${b.webUrl}#transfers`);
        const offer = pb.locator('.transfer.offer', { hasText: 'Test phone wants to send you 2 files' });
        await offer.waitFor();
        await offer.getByRole('button', { name: /Accept/ }).click();
        // Part of it is there, not all of it: a transfer in progress.
        const card = pb.locator('.transfer.state-running', { hasText: 'From Test phone' });
        await card.waitFor();
        await pb.waitForFunction(() => {
          const p = document.querySelector('.transfer.state-running .overall progress');
          return p && p.value > 0 && p.value < p.max;
        });
        await shoot(pb, 'transfer');
        await shoot(pg, 'guest-send');
        await cdp.send('Network.emulateNetworkConditions', {
          offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
        });
        await pg.locator('.transfer.state-complete').waitFor({ timeout: 60000 });
        const link = pb.locator('.received-file', { hasText: 'holiday.mp4' }).getByRole('link', { name: /Download/ });
        await link.waitFor();
        const got = await download(pb, link);
        check(sha(got) === sha(video.buffer), `holiday.mp4 differs after the upload (${got.length} bytes)`);
      });

      await step('the owner sends a file to the guest, which downloads it', async () => {
        await pb.goto(`${b.webUrl}#send`);
        await pb.setInputFiles('#send-files', [photo]);
        await pb.locator('.target', { hasText: 'Test phone' }).locator('input').check();
        await pb.getByRole('button', { name: /^Send 1 file to/ }).click();
        await pg.goto(`${lanUrl}#files`);
        const link = pg.locator('.received-file', { hasText: 'photo.bin' }).getByRole('link', { name: /Download/ });
        await link.waitFor();
        await shoot(pg, 'guest-files');
        const got = await download(pg, link);
        check(sha(got) === sha(photo.buffer), 'photo.bin differs after the guest downloaded it');
        // The owner sees the guest fetched all of it.
        await pb.locator('#view-send .transfer.state-complete', { hasText: 'To Test phone' }).waitFor();
      });
    }
  } finally {
    for (const c of clis) if (c.exitCode === null) c.kill('SIGTERM');
    for (const br of browsers) await br.close().catch(() => {});
    for (const n of nodes) await n.stop().catch(() => {});
    ns?.down();
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  failed = true;
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL setup\n${e.stack || e}`);
}
const passed = results.filter((r) => r.ok && !r.skipped).length;
const nfailed = results.filter((r) => !r.ok).length;
const skipped = results.filter((r) => r.skipped && r.ok).length;
console.log(`screenshots: ${OUT}`);
console.log(`browser: ${passed} passed, ${nfailed} failed, ${skipped} skipped`);
process.exit(nfailed ? 1 : 0);
