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

// Background Sync, where the browser has it: wake an open page to send. Nothing depends on it.
self.addEventListener('sync', (event) => {
  if (event.tag !== 'kontor-sync') return;
  event.waitUntil(self.clients.matchAll().then((clients) => clients.forEach((c) => c.postMessage('sync'))));
});
