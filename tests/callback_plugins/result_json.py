"""Test-only stdout callback: the play's results as one JSON document.

Same shape as ansible.posix.json (plays -> tasks -> hosts -> result, plus stats),
which ansible-core does not ship and Galaxy cannot provide here.
"""

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: result_json
type: stdout
short_description: print task results and stats as one JSON document (tests only)
description: [Collects every task result and prints plays, tasks, hosts and stats as JSON at the end.]
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'result_json'

    def __init__(self):
        super().__init__()
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({'play': {'name': play.get_name()}, 'tasks': []})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.plays[-1]['tasks'].append({'task': {'name': task.get_name()}, 'hosts': {}})

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, **flags):
        data = dict(result._result)
        data.update(flags)
        self.plays[-1]['tasks'][-1]['hosts'][result._host.get_name()] = data

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = dict((host, stats.summarize(host)) for host in sorted(stats.processed))
        print(json.dumps({'plays': self.plays, 'stats': summary}, default=str))
