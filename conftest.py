# Repository root on sys.path for tests, so `configs` imports as a package.
