# install / uninstall — included at the end of the top-level Makefile.
#
#   make install [DESTDIR=/tmp/root] [PREFIX=/usr/local] [SYSCONFDIR=/etc] [UNITDIR=...]
#   make uninstall (same variables): removes everything install put there except the
#   configuration file, which belongs to the administrator once installed.
#
# UNITDIR defaults to $(PREFIX)/lib/systemd/system: with PREFIX=/usr/local that is
# /usr/local/lib/systemd/system, which systemd searches for system units, so a local install
# never writes into the package manager's /usr/lib (or /lib) tree and uninstalls cleanly;
# with PREFIX=/usr it is the distribution's own directory. Override it for other prefixes.
#
# The units in systemd/ and the man pages name the default paths; they are installed
# through sed so they always name the paths actually installed to (PREFIX=/usr included).

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
SBINDIR    ?= $(PREFIX)/sbin
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
DOCDIR     ?= $(DATADIR)/doc/smtp-tls-proxy
UNITDIR    ?= $(PREFIX)/lib/systemd/system
CONFDIR    := $(SYSCONFDIR)/smtp-tls-proxy
INSTALL    ?= install
# What is installed: the optimised build, whatever SANITIZE says.
INSTALL_BIN ?= build/smtp-tls-proxy

UNIT_SED := -e 's|/usr/local/sbin/|$(SBINDIR)/|g' \
            -e 's|/etc/smtp-tls-proxy/|$(CONFDIR)/|g' \
            -e 's|/usr/local/share/doc/smtp-tls-proxy/|$(DOCDIR)/|g'
MAN_SED  := $(UNIT_SED) -e 's|/usr/local/lib/systemd/system/|$(UNITDIR)/|g'

# Complete configurations (Gmail, Microsoft 365, ...) beside the systemd drop-ins.
EXAMPLE_CONFS := $(wildcard conf/examples/*.ini)

INSTALLED_FILES := \
	$(SBINDIR)/smtp-tls-proxy \
	$(UNITDIR)/smtp-tls-proxy.service \
	$(UNITDIR)/smtp-tls-proxy.socket \
	$(MANDIR)/man8/smtp-tls-proxy.8 \
	$(MANDIR)/man5/smtp-tls-proxy.ini.5 \
	$(DOCDIR)/README.md \
	$(DOCDIR)/smtp-tls-proxy.ini \
	$(DOCDIR)/examples/socket-activation.conf \
	$(DOCDIR)/examples/credentials.conf \
	$(DOCDIR)/examples/alerts.example.yml \
	$(DOCDIR)/examples/haproxy.cfg.example \
	$(addprefix $(DOCDIR)/examples/,$(notdir $(EXAMPLE_CONFS)))

.PHONY: install uninstall

install: $(INSTALL_BIN)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(INSTALL_BIN) $(DESTDIR)$(SBINDIR)/smtp-tls-proxy
	@# The configuration is the administrator's once it exists: never overwritten. It is
	@# world-readable because the service's dynamic user must read it; secrets go in a
	@# credential (see examples/credentials.conf), not in this file.
	@if [ -e $(DESTDIR)$(CONFDIR)/smtp-tls-proxy.ini ]; then \
	  echo "keeping $(DESTDIR)$(CONFDIR)/smtp-tls-proxy.ini (reference: $(DOCDIR)/smtp-tls-proxy.ini)"; \
	else \
	  echo "$(INSTALL) -m 0644 conf/smtp-tls-proxy.ini $(DESTDIR)$(CONFDIR)/smtp-tls-proxy.ini"; \
	  $(INSTALL) -m 0644 conf/smtp-tls-proxy.ini $(DESTDIR)$(CONFDIR)/smtp-tls-proxy.ini; \
	fi
	sed $(UNIT_SED) systemd/smtp-tls-proxy.service > $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.service.tmp
	mv $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.service.tmp $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.service
	sed $(UNIT_SED) systemd/smtp-tls-proxy.socket > $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.socket.tmp
	mv $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.socket.tmp $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.socket
	chmod 0644 $(DESTDIR)$(UNITDIR)/smtp-tls-proxy.socket
	sed $(MAN_SED) man/smtp-tls-proxy.8 > $(DESTDIR)$(MANDIR)/man8/smtp-tls-proxy.8.tmp
	mv $(DESTDIR)$(MANDIR)/man8/smtp-tls-proxy.8.tmp $(DESTDIR)$(MANDIR)/man8/smtp-tls-proxy.8
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/smtp-tls-proxy.8
	sed $(MAN_SED) man/smtp-tls-proxy.ini.5 > $(DESTDIR)$(MANDIR)/man5/smtp-tls-proxy.ini.5.tmp
	mv $(DESTDIR)$(MANDIR)/man5/smtp-tls-proxy.ini.5.tmp $(DESTDIR)$(MANDIR)/man5/smtp-tls-proxy.ini.5
	chmod 0644 $(DESTDIR)$(MANDIR)/man5/smtp-tls-proxy.ini.5
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(INSTALL) -m 0644 conf/smtp-tls-proxy.ini $(DESTDIR)$(DOCDIR)/smtp-tls-proxy.ini
	$(INSTALL) -m 0644 systemd/examples/socket-activation.conf systemd/examples/credentials.conf \
	    $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 $(EXAMPLE_CONFS) conf/alerts.example.yml \
	    conf/haproxy.cfg.example $(DESTDIR)$(DOCDIR)/examples/

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED_FILES))
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null
	@echo "kept $(DESTDIR)$(CONFDIR)/smtp-tls-proxy.ini (remove it yourself if no longer wanted)"
