"""The fault drills share tests/conftest.py's stacks and its `figure` fixture (their figures are
printed at the end of the session)."""
