"""What the HTTP layer (worker.py) and the app (main.py) agree on, defined once for both: the keys the HTTP layer
adds to a request's ASGI scope, and how a body the app refused before its end is dropped.

Under another ASGI server none of these keys is present, and the app still works: it then arms a body
deadline for every request and lets a lone request's batch wait one event-loop iteration for others.
"""

# The HTTP layer answered this request itself (with this status) when its body broke the protocol: the app must
# not count it again as a client that went away.
ANSWERED = "model_server.answered"
# Every request this process has begun, this one included (a sized collection), counting those whose bytes have
# arrived but whose handling has not started yet: when there is no other, a batch has nobody to wait for.
# Present only under this server's HTTP layer, so it also says that layer bounds what it drops (below).
REQUESTS_IN_FLIGHT = "model_server.requests_in_flight"
# Present once the whole body has arrived: the app reads it without arming a deadline.
BODY_COMPLETE = "model_server.body_complete"

# A body the app answered before it had all arrived (413) is read and dropped by the HTTP layer, so that its
# sender, still sending, sees the answer rather than a reset connection: at most this many bytes of it (a
# larger declared body is cut off at once), arriving within the body deadline (BODY_TIMEOUT_SECONDS).
DISCARD_BYTES = 4 << 20
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
