"""The audit chain's link, as the README's "Audit log" defines it, for the seeders."""
import hashlib
import struct


def link(previous, position, event_id, created_at, component, environment, email, message, data):
    """The hash (hex) of the event at `position` after the one whose hash is `previous`."""
    digest = hashlib.sha256(bytes.fromhex(previous))
    for field in (str(position), event_id, str(created_at), component, environment, email, message, data):
        encoded = field.encode()
        digest.update(struct.pack(">I", len(encoded)))
        digest.update(encoded)
    return digest.hexdigest()
