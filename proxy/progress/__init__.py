"""Job progress: snapshots, where they are kept, and how they reach watchers (Socket.IO, HTTP)."""
