"""A value far too long for any message (issue 23, class 10): the error names it by its head,
says why by its tail, stays readable, and the kernel is left as it was."""

DUMP = 'iptables-save -t nat; ip6tables-save -t nat; ipset save'


def kernel_dump(ns):
    return [line for line in ns.out(DUMP).splitlines() if not line.startswith('#')]


def test_a_5_mb_comment_is_refused_in_a_readable_message(netns):
    before = kernel_dump(netns)
    comment = 'y' * (5 * 1024 * 1024)
    result = netns.module('masquerade', {'cluster_cidrs': ['10.244.0.0/16'], 'pod_cidrs': ['10.244.1.0/24'], 'comment': comment},
                          expect_failure=True)
    assert len(result['msg']) < 1200, len(result['msg'])
    assert result['msg'].startswith("invalid comment 'yyyy") and 'characters cut' in result['msg']
    assert result['msg'].endswith('without quotes or backslashes')
    assert kernel_dump(netns) == before
