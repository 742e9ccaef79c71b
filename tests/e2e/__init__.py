# Makes pytest import this directory's conftest as e2e.conftest, so it does not
# shadow tests/integration/conftest.py (imported as plain `conftest`) in one run.
