"""When an exporter encodes a batch on the event loop, and when in a worker thread.

Encoding a batch for a backend (Elasticsearch bulk items, OTLP protobuf, remote-write samples) is
Python that holds the GIL throughout: a worker thread runs none of it in parallel with the event
loop. What a thread does add is the GIL's hand-off. The loop releases the GIL at every socket call
and then waits for it, up to the 5 ms switch interval, while the encoding thread holds it. Under
load the sender's encode, in its thread, and the receivers, on the loop, kept stalling each other.
Elasticsearch's sender then delivered less than the receivers accepted, and the backlog went to
disk and was decoded again later (bench/RESULTS.md, "Exporters encode on the event loop").

So a batch of up to ``INLINE_ENCODE_RECORDS`` records is encoded inline, in the sender's own turn:
at the default ``batch.max_records`` (1,000) that is about 10 ms of the loop. A larger batch still
goes to a worker thread, so that one huge batch does not hold every connection for its whole
encode: there the switch interval shares the core between the two. Work that releases the GIL
(gzip, SQLite, file writes) stays in threads.
"""

from __future__ import annotations

from typing import Final

# Records (log records, spans, metric points) a batch may have to be encoded inline: about 20 ms of
# encoding at the ~10 µs a record Elasticsearch's bulk items cost.
INLINE_ENCODE_RECORDS: Final = 2000
