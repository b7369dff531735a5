"""Property-test driver: run under `ip netns exec NS` by tests/property/test_invariant.py.

    python driver.py ENGINE NAMESPACE_PREFIX

Runs one module in-process many times: each example calls the module's own main()
(its AnsibleModule with its own argument_spec, then its one call into module_utils:
ipset.run, vip's engine wherever it lives, masquerade.run, fip.run) with generated
arguments, over the foreign state planted in the namespace, and checks the invariant:

- a check-mode run and a refused (failed) run change nothing at all (full dumps equal);
- a successful run leaves the foreign part of every dump byte-identical, and one that
  reports changed: false changed nothing;
- its immediate second run succeeds, reports changed: false and changes nothing.

Between examples our objects are removed and the dump must equal the baseline again;
when the cheap reset cannot get there the driver moves to a fresh namespace.
Environment: CN_PROPERTY_EXAMPLES (examples, default 3000), CN_PROPERTY_SECONDS (time cap,
default 600: no new chunk of examples starts after it), CN_PROPERTY_MULTIPLE=1 (search for
every distinct bug), CN_PROPERTY_SHRINK_SECONDS (default 60), CN_PROPERTY_SEED
(default 12; "random" for a new one). The seed is printed first, so a failure can be replayed.
"""

import faulthandler
import json
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, '..'), os.path.join(HERE, '..', '..', 'build', 'collections')]

# pylint: disable=wrong-import-position
import state  # noqa: E402
import strategies  # noqa: E402
from ansible.module_utils import basic  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.internal.conjecture import engine as engine_module  # noqa: E402
from inprocess import run_module  # noqa: E402

# Thousands of in-process runs: keep them out of the journal.
basic.AnsibleModule._log_invocation = lambda self: None


class Stats(object):
    examples = checked = refused = applied = fresh = 0
    start = None


STATS = Stats()


def owned(engine, args):
    """What a run with these arguments may change, from the documented contract alone."""
    if engine == 'ipset':
        name, families = args.get('name'), args.get('families', ['ipv4', 'ipv6'])
        sets = set()
        if isinstance(name, str):
            if 'ipv4' in families:
                sets.add(name)
            if 'ipv6' in families:
                sets.update([args.get('ipv6_name') or ('inet6:' + name), name if name.startswith('inet6:') else None])
        return {'sets': sets - set([None])}
    if engine == 'vip':
        return {'links': [args.get('interface', 'kube-dummy-if')]}
    if engine == 'masquerade':
        comment = args.get('comment', 'clusternet masq')
        return {'chains': [args.get('chain', 'CLUSTERNET-POSTRTG')], 'comment': lambda c: c == comment}
    return {'chains': [args.get('dnat_chain', 'CLUSTERNET-FIP-DNAT'), args.get('snat_chain', 'CLUSTERNET-FIP-SNAT')],
            'comment': state.fip_comment}


class Kernel(object):
    def __init__(self, prefix):
        self.prefix, self.count = prefix, 0
        state.plant()
        self.base = state.dump()

    def restore(self, owns, last):
        """Back to the baseline: cheap reset, checked; a fresh namespace when it falls short."""
        if last == self.base:
            return
        state.reset(owns)
        if state.dump() == self.base:
            return
        self.count += 1
        STATS.fresh += 1
        name = '%s-%d' % (self.prefix, self.count)
        state.fresh_namespace(name)
        if self.count > 1:
            state.sh(['ip', 'netns', 'del', '%s-%d' % (self.prefix, self.count - 1)])
        self.base = state.dump()


def property_for(engine, kernel):
    def example(args, check):
        STATS.examples += 1
        if STATS.examples % 100 == 0:
            print('%s: %d examples, %.0f s' % (engine, STATS.examples, time.monotonic() - STATS.start), flush=True)
        owns = owned(engine, args)
        base = last = kernel.base
        try:
            first = run_module(engine, args, check=check, diff=True)
            after = last = state.dump()
            if check:
                STATS.checked += 1
                assert after == base, 'check mode changed state: %s; result %r' % (state.first_difference(base, after), first)
                return
            if first.get('failed'):
                STATS.refused += 1
                assert after == base, 'refused run changed state: %s; msg %r' % (state.first_difference(base, after), first.get('msg'))
                return
            STATS.applied += 1
            was, now = state.foreign(base, owns), state.foreign(after, owns)
            assert was == now, 'run changed foreign state: %s' % state.first_difference(was, now)
            if not first.get('changed'):
                assert after == base, 'changed: false but state changed: %s' % state.first_difference(base, after)
            second = run_module(engine, args, diff=True)
            assert not second.get('failed'), 'second run failed: %r' % second.get('msg')
            again = last = state.dump()
            assert not second.get('changed'), 'second run not idempotent: %s; result %r' % (
                state.first_difference(after, again), dict((k, v) for k, v in second.items() if k != 'invocation'))
            assert again == after, 'second run reported no change but changed: %s' % state.first_difference(after, again)
        except BaseException:
            last = None  # whatever happened, check the kernel itself before the next example
            raise
        finally:
            kernel.restore(owns, state.dump() if last is None else last)

    return example


CHUNK = 50


def hypothesis_run(engine, kernel, count, number, multiple):
    test = property_for(engine, kernel)
    test = given(args=strategies.ARGS[engine](), check=st.sampled_from([False, False, False, True]))(test)
    test = settings(max_examples=count, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=multiple,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink, Phase.explain], print_blob=False)(test)
    return seed(number)(test)


def main():
    engine, prefix = sys.argv[1], sys.argv[2]
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 shows where a slow driver is
    STATS.start = time.monotonic()
    # A fixed count, not a time budget, makes the CI profile the same examples on every machine
    # (a faster CI once reached chunks no local run had); the cap only guards a slow one.
    examples = int(os.environ.get('CN_PROPERTY_EXAMPLES', '3000'))
    # One bug (shrunk) stops the run; with CN_PROPERTY_MULTIPLE=1 every distinct one is searched
    # for and shrunk, over all the examples asked for in one hypothesis run (no time budget then).
    multiple = os.environ.get('CN_PROPERTY_MULTIPLE') == '1'
    deadline = time.monotonic() + float(os.environ.get('CN_PROPERTY_SECONDS', '600'))
    engine_module.MAX_SHRINKING_SECONDS = int(os.environ.get('CN_PROPERTY_SHRINK_SECONDS', '60'))
    chosen = os.environ.get('CN_PROPERTY_SEED', '12')
    number = random.SystemRandom().randrange(2 ** 32) if chosen == 'random' else int(chosen)
    print('property %s: seed %d, up to %d examples' % (engine, number, examples), flush=True)
    kernel = Kernel(prefix)
    failed = False
    try:
        # Hypothesis has no time budget: run chunks of examples, chunk i with seed SEED+i, until
        # the examples are done or the budget is spent. Each chunk replays on its own seed.
        chunk = 0
        while STATS.examples < examples and (multiple or chunk == 0 or time.monotonic() < deadline):
            count = examples if multiple else min(CHUNK, examples - STATS.examples)
            try:
                hypothesis_run(engine, kernel, count, number + chunk, multiple)()
            except BaseException as exc:  # pylint: disable=broad-except
                failed = True
                for error in getattr(exc, 'exceptions', None) or [exc]:
                    # Hypothesis attaches the (shrunk) falsifying example to the error as notes.
                    print('FAILED (replay: CN_PROPERTY_SEED=%d): %s: %s\n%s' % (
                        number + chunk, type(error).__name__, str(error)[:3000], '\n'.join(getattr(error, '__notes__', ()))),
                        flush=True)
                break
            chunk += 1
            if multiple:
                break
    finally:
        summary = dict(engine=engine, seed=number, examples=STATS.examples, check_mode=STATS.checked, refused=STATS.refused,
                       applied=STATS.applied, fresh_namespaces=STATS.fresh, seconds=round(time.monotonic() - STATS.start, 1),
                       failed=failed)
        print('SUMMARY ' + json.dumps(summary), flush=True)
        if kernel.count:
            state.sh(['ip', 'netns', 'del', '%s-%d' % (prefix, kernel.count)])
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
