"""The model server's metrics contract: what app/model_server/emf.py publishes and which task env sets it.

The server writes Embedded Metric Format lines on stdout; the `awslogs` driver delivers them to CloudWatch
Logs, which turns them into metrics (no agent). The stack sets these variables on the container, and the
dashboard, the settings rules and the optional in-flight scaling policy read the names from here.
"""

NAMESPACE = "ModelServing"  # the server's default namespace, set explicitly so both sides agree
DIMENSION = "ServiceName"
INFERENCE_LATENCY = "InferenceLatency"  # Milliseconds, per /predict request (batch wait included)
BATCH_SIZE = "BatchSize"  # Count, instances per model call
IN_FLIGHT = "InFlightRequests"  # Count, the task's requests in flight, sampled each second (Average = per task)

ENV_NAMESPACE = "METRICS_NAMESPACE"
ENV_SERVICE_NAME = "METRICS_SERVICE_NAME"
ENV_BATCH_MAX_SIZE = "BATCH_MAX_SIZE"
ENV_BATCH_MAX_WAIT_MS = "BATCH_MAX_WAIT_MS"
# Set by the stack from its settings; containerEnvironment may not set them too.
STACK_ENVIRONMENT = (ENV_NAMESPACE, ENV_SERVICE_NAME, ENV_BATCH_MAX_SIZE, ENV_BATCH_MAX_WAIT_MS)


def metrics_environment(service_name: str, batch_max_size: int,
                        batch_max_wait_ms: int) -> tuple[tuple[str, str], ...]:
    """The container environment the stack sets: where the metrics go and how the server batches."""
    return ((ENV_NAMESPACE, NAMESPACE), (ENV_SERVICE_NAME, service_name),
            (ENV_BATCH_MAX_SIZE, str(batch_max_size)), (ENV_BATCH_MAX_WAIT_MS, str(batch_max_wait_ms)))
