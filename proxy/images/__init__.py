"""Images as bytes: recognise the format, decode, transcode, and hold inputs to their limits."""
