// Kontor's service worker: the app shell from the cache first, so the app opens with no network;
// API calls never touch the cache. `cargo xtask dist` writes the version and the file list, both
// derived from the build's hashed file names.
const VERSION = '__KONTOR_VERSION__';
const PRECACHE = __KONTOR_PRECACHE__;
const CACHE = 'kontor-shell-' + VERSION;
const SCOPE = self.registration.scope;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE.map((f) => SCOPE + f))));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('kontor-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener('message', (event) => {
  if (event.data === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  if (!request.url.startsWith(SCOPE)) return;
  if (request.mode === 'navigate') {
    event.respondWith(caches.match(SCOPE + 'index.html').then((hit) => hit || fetch(request)));
    return;
  }
  event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
});

// Background Sync, where the browser has it: the browser wakes this worker once the network is
// back. An open page of the app sends its outbox itself (it holds the clock, the language and the
// screen); with none open, the worker sends the waiting declarations and writes their outcomes
// into IndexedDB, where the app reads them next time. A failure rejects the event, and the
// browser tries again later. Both send under the `kontor-sync` Web Lock, so never twice at once.
self.addEventListener('sync', (event) => {
  if (event.tag !== 'kontor-sync') return;
  // Any window of the app counts, controlled by this worker or not yet (a first visit, a reload
  // that bypassed it): it sends for itself, and the worker leaves it to.
  event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((all) => {
    const pages = all.filter((c) => c.url.startsWith(SCOPE));
    if (pages.length > 0) {
      pages.forEach((c) => c.postMessage('sync'));
      return undefined;
    }
    return self.navigator.locks ? self.navigator.locks.request('kontor-sync', sendOutbox) : sendOutbox();
  }));
});

// The same limits as the app's (`shared::wire::MAX_BATCH`, the app's request timeout).
const MAX_BATCH = 500;
const TIMEOUT_MS = 20000;

function settled(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error || new Error('the transaction was aborted'));
  });
}

// The app's database as the app made it, or null where it never ran (opening must not create it).
function openOutbox() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('kontor');
    let created = false;
    request.onupgradeneeded = () => { created = true; request.transaction.abort(); };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => (created ? resolve(null) : reject(request.error));
  });
}

async function sendOutbox() {
  const db = await openOutbox();
  if (!db) return;
  try {
    const read = db.transaction(['declarations', 'meters'], 'readonly');
    const [all, meters] = await Promise.all([
      settled(read.objectStore('declarations').getAll()),
      settled(read.objectStore('meters').getAll()),
    ]);
    const waiting = all.filter((d) => d.state === 'waiting')
      .sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, MAX_BATCH);
    const device = waiting.map((d) => d.device_id).find((id) => id);
    // Records from before the app kept the device's id: the page sends those.
    if (waiting.length === 0 || !device) return;
    const meter = meters.find((m) => m.subscription === waiting[0].subscription);
    const headers = { 'content-type': 'application/json', 'accept-language': waiting[0].lang || 'fa' };
    if (meter && meter.device_token) headers.authorization = 'Bearer ' + meter.device_token;
    const submissions = waiting.map((d) => {
      const item = { id: d.id, subscription: d.subscription, meter_serial: d.meter_serial, reading: d.reading, read_at: d.read_at };
      if (d.corrects) item.corrects = d.corrects;
      return item;
    });
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch(new URL('../api/v1/sync', SCOPE), {
        method: 'POST', headers, body: JSON.stringify({ device_id: device, submissions }), signal: controller.signal,
      });
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) throw new Error('the server answered ' + response.status);
    const answer = await response.json();
    // Each outcome as the app's `Declaration::with_result` writes it; a correction's earlier
    // reading marked replaced. Only records still waiting change: a page may have sent them.
    const answeredAt = new Date().toISOString();
    const write = db.transaction(['declarations'], 'readwrite');
    const store = write.objectStore('declarations');
    for (const result of answer.results || []) {
      const sent = waiting.find((d) => d.id === result.id);
      if (!sent) continue;
      store.put(Object.assign({}, sent, {
        state: result.status, code: result.code || null, message: result.message,
        tracking_code: result.tracking_code || null, consumption_m3: result.consumption_m3 ?? null,
        answered_at: answeredAt,
      }));
      const earlier = result.supersedes && all.find((d) => d.id === result.supersedes);
      if (earlier) store.put(Object.assign({}, earlier, { replaced_by: result.id }));
    }
    await committed(write);
  } finally {
    db.close();
  }
}
