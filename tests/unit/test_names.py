import pytest
from ansible_collections.clusternet.node.plugins.module_utils import names


@pytest.mark.parametrize('name', ['kube-dummy-if', 'eth0', 'a' * 15, 'br.100', 'é' * 7])
def test_interface_names_the_kernel_accepts(name):
    assert names.check_interface_name(name) == name


@pytest.mark.parametrize('name', ['', 'a' * 16, 'é' * 8, '.', '..', 'eth0:1', 'a/b', 'a b', 'a\tb', 'a\0b', None, 5])
def test_interface_names_the_kernel_refuses_are_named(name):
    with pytest.raises(ValueError) as exc:
        names.check_interface_name(name, 'interface')
    assert 'invalid interface %r' % (name,) in str(exc.value)


def test_an_at_sign_is_refused_as_ip_prints_it_between_a_link_and_its_peer():
    with pytest.raises(ValueError):
        names.check_interface_name('x@y')


def test_a_percent_sign_is_refused_as_the_kernel_takes_it_as_a_name_template():
    with pytest.raises(ValueError) as exc:
        names.check_interface_name('kube%d')
    assert "'kube%d'" in str(exc.value) and '"%"' in str(exc.value)
