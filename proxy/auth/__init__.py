"""Gateway keys: who is calling."""

from proxy.auth.keys import Key, KeyRing, hash_key, new_key

__all__ = ["Key", "KeyRing", "hash_key", "new_key"]
