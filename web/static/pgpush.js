// pgpush.js: placeholder until the client lands.
export {};
