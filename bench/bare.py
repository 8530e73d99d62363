"""The benchmark's baseline: a workflow that runs one activity (its own module, so the workflow
sandbox imports nothing but Temporal)."""

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
def noop(value: int) -> int:
    """The baseline's one activity."""
    return value


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    """The baseline: a workflow that runs one activity."""

    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=30))
