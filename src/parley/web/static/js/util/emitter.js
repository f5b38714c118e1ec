// A minimal event emitter: on() returns an unsubscribe function.
export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type)?.delete(fn);
  }

  emit(type, data) {
    for (const fn of this._handlers.get(type) || []) {
      try {
        fn(data);
      } catch (err) {
        console.error(`handler for "${type}" failed`, err);
      }
    }
  }
}
