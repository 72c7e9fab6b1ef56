"""wstest, with every socket it listens on bound to 127.0.0.1 (Python 2.7).

This file runs on the Python 2.7 of the environment that autobahn_env.py
builds, not on the project's Python 3: ``python2.7 wstest_launcher.py ARGS``
is the same as the package's ``wstest ARGS``.

Left alone, wstest's listeners (the fuzzing server's WebSocket port and its
report web server) bind every interface of the machine, and a test run must
be reachable from the loopback interface only. Twisted's ``listenTCP`` and
``listenSSL`` take the interface as an argument that wstest never gives, so
filling it in on the reactor covers every listener at once, whatever module
opens it. A caller that names an interface itself keeps it.
"""

import sys
import warnings

# cryptography 3.3 says on every start that Python 2 is deprecated; the
# report logs are easier to read without it.
warnings.filterwarnings("ignore", message="Python 2 is no longer supported")

# wstest must be imported first: importing it installs the epoll reactor,
# which has to happen before anything imports twisted.internet.reactor.
from autobahntestsuite import wstest  # noqa: E402
from twisted.internet import reactor  # noqa: E402

LOOPBACK = "127.0.0.1"
_listen_tcp = reactor.listenTCP
_listen_ssl = reactor.listenSSL


def listen_tcp(port, factory, backlog=50, interface=""):
    return _listen_tcp(port, factory, backlog, interface or LOOPBACK)


def listen_ssl(port, factory, context_factory, backlog=50, interface=""):
    return _listen_ssl(port, factory, context_factory, backlog, interface or LOOPBACK)


reactor.listenTCP = listen_tcp
reactor.listenSSL = listen_ssl

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
