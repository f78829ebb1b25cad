"""Status events: how workers tell the world about a job (sinks, the update-job entry point, the consumer)."""
