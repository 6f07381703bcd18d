"""The wire protocol: msgspec Structs for every frame, codecs, errors, SSE parsing.

Pure: no I/O. See DESIGN.md §3.
"""

from .codec import (
    DEFAULT_MAX_FRAME_SIZE,
    ClientDecoder,
    ServerDecoder,
    decode_client_frame,
    decode_server_frame,
    encode,
    encode_str,
)
from .errors import (
    FrameTooLarge,
    InvalidFrame,
    LocalProtocolError,
    RemoteProtocolError,
    RtnbError,
)
from .frames import (
    Authenticate,
    Authenticated,
    Batch,
    ClientBound,
    Error,
    Event,
    Heartbeat,
    Mutate,
    MutationRejected,
    Ping,
    Pong,
    ServerBound,
    Snapshot,
    SnapshotEntity,
    SnapshotRequest,
    Subscribe,
    Subscribed,
    Unsubscribe,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Authenticate",
    "Authenticated",
    "Batch",
    "ClientBound",
    "ClientDecoder",
    "Error",
    "Event",
    "FrameTooLarge",
    "Heartbeat",
    "InvalidFrame",
    "LocalProtocolError",
    "Mutate",
    "MutationRejected",
    "Ping",
    "Pong",
    "RemoteProtocolError",
    "RtnbError",
    "ServerBound",
    "ServerDecoder",
    "Snapshot",
    "SnapshotEntity",
    "SnapshotRequest",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "decode_client_frame",
    "decode_server_frame",
    "encode",
    "encode_str",
]
