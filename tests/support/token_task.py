"""The digits task with one more config field, `api_token`, which the task only carries (a stand-in for a task
that calls an authenticated service): referenced as `tests.support.token_task:build`."""

import dataclasses

from tfpipe.components.tasks import Task, config_from_dict, task_factory
from tfpipe.components.tasks import digits


@dataclasses.dataclass
class TokenConfig(digits.DigitsConfig):
    """`DigitsConfig` plus a credential."""

    api_token: str = ""


@task_factory
def build(config: dict) -> Task:
    parsed = config_from_dict(TokenConfig, config, task="token")
    task = digits.build({k: v for k, v in dataclasses.asdict(parsed).items() if k != "api_token"})
    return dataclasses.replace(task, config=dataclasses.asdict(parsed))
