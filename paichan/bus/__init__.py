"""Redis Streams message bus: typed envelopes, inboxes, topics, journal, dead letters."""

from paichan.bus.envelope import Envelope, InvalidMessage, decode, make, message
from paichan.bus.server import EmbeddedRedis, RedisUnavailable, resolve_redis
from paichan.bus.streams import Bus, Consumer, Delivery, Fenced

__all__ = ["Bus", "Consumer", "Delivery", "EmbeddedRedis", "Envelope", "Fenced", "InvalidMessage", "RedisUnavailable",
           "decode", "make", "message", "resolve_redis"]
