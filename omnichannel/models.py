"""Real-time event log: every published event with its per-stream sequence number.

A console that reconnects sends the last sequence number it saw per stream and is
replayed everything after it from here, in order; the channel layer is only the
fast path (it delivers at most once).
"""

from django.db import models


class RealtimeStream(models.Model):
    name = models.CharField(max_length=100, primary_key=True)
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}@{self.last_seq}"


class RealtimeEvent(models.Model):
    stream = models.CharField(max_length=100)
    seq = models.BigIntegerField()
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "seq"], name="realtime_stream_seq_unique")]

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq}"
