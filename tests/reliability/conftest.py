"""Reliability suite: every test says what it tries with ``@pytest.mark.reliability(kind=...)``:
``fault`` (a failure injected into a real component), ``bad_input`` (a file or value that
must be rejected clearly), ``rows_lost`` (data must survive), ``secret`` (must not leak),
``injection`` (hostile text carried exactly and shown escaped: PromQL, HTML, CSV, terminal)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability(kind): fault | bad_input | rows_lost | secret | injection")
