"""sokures' sending engine, store and command line.

The engine signs (DKIM) and paces outbound mail per mailbox provider, reacts to the
providers' throttling replies, retries, and records every attempt in the store.
"""

__version__ = "0.1.0"
