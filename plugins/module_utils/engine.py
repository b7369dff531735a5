# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The steps every writer runs, written once: validate, lock, read, own, plan, apply, result.

An engine supplies the per-module parts (an object with these methods):

- ``validate(params)``: pure; the intent, or ValueError naming the offending value.
- ``read(kernel, intent)``: one dump per family through the engine's kernel object (the
  seam: tests put a fake with recorded dumps behind it).
- ``own(seen, intent)``: the only place that decides what is ours and what is foreign;
  ValueError when a foreign object forbids the run (a refusal).
- ``plan(owned, intent)``: pure; a Plan.

Kernel objects raise KernelError; ``run`` turns any failure into the module's one
``fail_json``, with what the kernel had acknowledged when it failed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.clusternet.node.plugins.module_utils.families import FAMILIES
from ansible_collections.clusternet.node.plugins.module_utils.lock import LockError


class KernelError(Exception):
    """A kernel read or write failed; the message names the tool or call. applied: the parts of
    a batched write the kernel acknowledged before it failed (a netlink send runs every request
    in it, even after one it refuses); the step itself still counts as not applied."""

    def __init__(self, msg, applied=()):
        super(KernelError, self).__init__(msg)
        self.applied = list(applied)


class EngineError(Exception):
    """Why a run stopped; applied: the labels of the steps the kernel acknowledged before it;
    result: the keys reported beside msg."""

    def __init__(self, msg, applied=(), result=None):
        super(EngineError, self).__init__(msg)
        self.applied = list(applied)
        self.result = dict(result or {})


class Step(object):
    """One write of a run: label names it in a failure; action(kernel, check_mode) raises KernelError.
    A step runs in check mode only when it has a check_label (it then only reads, say a count)."""

    def __init__(self, label, action, check_label=None):
        self.label = label
        self.action = action
        self.check_label = check_label


class Plan(object):
    """What a run would do: result (the module's keys: per family added/removed, ...), steps in
    order, preflight (callables of the kernel, checked before any step runs; they raise EngineError),
    warnings, and before/after: {family: [lines]} for diff mode, or diff: a callable returning
    diff mode's {before, after} itself, called after apply (an engine whose view is not per family)."""

    def __init__(self, result=None, steps=None, before=None, after=None):
        self.result = result if result is not None else {}
        self.steps = steps or []
        self.preflight = []
        self.warnings = []
        self.before = before or {}
        self.after = after or {}
        self.diff = None


def render_diff(before, after):
    """Diff mode's {before, after} from {family: [lines]}: one string each, a header per family."""
    def text(view):
        return ''.join('# %s\n%s' % (family, ''.join(line + '\n' for line in view.get(family, []))) for family in FAMILIES)
    return {'before': text(before), 'after': text(after)}


def apply(kernel, steps, result, check_mode):
    """Run the steps in order; the first KernelError becomes an EngineError that names the steps
    applied before it (and the parts of its own step the kernel acked, KernelError.applied) and
    those not applied, with result (changed: whether anything was applied)."""
    if check_mode:
        steps = [Step(step.check_label, step.action) for step in steps if step.check_label]
    for index, step in enumerate(steps):
        try:
            step.action(kernel, check_mode)
        except KernelError as exc:
            done = [s.label for s in steps[:index]] + exc.applied
            left = [s.label for s in steps[index:]]
            result['changed'] = bool(done) and not check_mode
            raise EngineError('%s. Applied: %s. Not applied: %s.' % (exc, ', '.join(done) or 'nothing', ', '.join(left)),
                              applied=[] if check_mode else done, result=result) from None


def execute(engine, kernel, params, check_mode=False, diff=False, warn=None):
    """One run of engine against kernel; returns the result or raises EngineError."""
    try:
        intent = engine.validate(params)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    try:
        with kernel.lock():
            try:
                plan = engine.plan(engine.own(engine.read(kernel, intent), intent), intent)
            except (ValueError, KernelError) as exc:
                raise EngineError(str(exc)) from None
            for warning in plan.warnings:
                if warn:
                    warn(warning)
            for check in plan.preflight:
                check(kernel)
            result = plan.result
            result.setdefault('changed', False)
            apply(kernel, plan.steps, result, check_mode)
    except LockError as exc:
        raise EngineError(str(exc)) from None
    if diff:
        result['diff'] = plan.diff() if plan.diff else render_diff(plan.before, plan.after)
    return result


# A message quoting a huge value (a 5 MB comment) is cut in the middle: its head names the
# value, its tail says why.
MESSAGE_HEAD, MESSAGE_TAIL = 600, 300


def readable(msg):
    """msg, or its head and tail around a note of how many characters were cut."""
    if len(msg) <= MESSAGE_HEAD + MESSAGE_TAIL + 100:
        return msg
    cut = len(msg) - MESSAGE_HEAD - MESSAGE_TAIL
    return '%s ... [%d characters cut] ... %s' % (msg[:MESSAGE_HEAD], cut, msg[-MESSAGE_TAIL:])


def report(module, action):
    """action()'s result, or the module's one fail_json: every failure of every module of the
    collection ends here, with what was applied beside the (readable) message."""
    try:
        return action()
    except (EngineError, KernelError, LockError) as exc:
        module.fail_json(msg=readable(str(exc)), **getattr(exc, 'result', {}))


def run(module, engine, kernel):
    """The module's result, or its one fail_json with what was applied."""
    return report(module, lambda: execute(engine, kernel, module.params, module.check_mode, module._diff, module.warn))
