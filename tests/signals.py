"""Ctrl-C as at a terminal, even when the tests run as a background job (which ignores SIGINT, and a child
inherits that): run a command as [sys.executable, '-c', WITH_DEFAULT_SIGINT, '-m', module, ...]; the child puts
SIGINT back to its default and execs the command (sys.argv[1:]). A preexec_fn would do it in a fork of the test
process, where JAX runs threads (JAX warns of os.fork()); exec keeps a default disposition and the pid."""
WITH_DEFAULT_SIGINT = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
                       'os.execv(sys.executable, [sys.executable] + sys.argv[1:])')
