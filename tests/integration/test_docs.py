"""The Dockerfile and doc/deploy.md stay true to the code: the image builds through the
README's setup.sh path, installs the libraries src/berth links, sets only real settings and
exposes the ports it listens on; its HEALTHCHECK command works against a real berth; the guide's
settings, variables, metrics, Kubernetes and compose examples match berth. No container engine
runs here, so the image itself is not built: these checks are what keeps it honest."""

import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

import harness
from harness import free_port

SRC = harness.SRCDIR
DOCKERFILE = os.path.join(SRC, "Dockerfile")
DEPLOY = os.path.join(SRC, "doc", "deploy.md")

# snake_case names in doc/deploy.md that are not berth's, and whose they are.
FOREIGN_NAMES = {
    "max_connections": "PostgreSQL",
    "superuser_reserved_connections": "PostgreSQL",
    "reserved_connections": "PostgreSQL 16",
    "pg_advisory_lock": "PostgreSQL function",
    "connection_limit": "Prisma URL parameter",
    "stop_grace_period": "docker compose",
    "stop_signal": "docker compose",
    "network_mode": "docker compose",
    "depends_on": "docker compose",
    "static_configs": "Prometheus",
    "histogram_quantile": "PromQL function",
    "service_healthy": "docker compose",
    "channel_binding": "libpq connection parameter",
}


def read(path):
    with open(path) as f:
        return f.read()


def dockerfile():
    """[(stage, INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out, stage, cur = [], -1, ""
    for line in read(DOCKERFILE).splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        instr, _, args = cur.strip().partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stage += 1
        out.append((stage, instr, " ".join(args.split())))
        cur = ""
    return out


def docker_env():
    env = {}
    for _, instr, args in dockerfile():
        if instr == "ENV":
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                env[k] = v
    return env


def sample_settings():
    """Setting names from `berth --config-sample`, with their defaults."""
    out = subprocess.run([harness.BERTH_BIN, "--config-sample"], capture_output=True, text=True,
                         check=True).stdout
    main = out[out.index("\n[berth]\n"):]
    return {m.group(1): m.group(2) or ""
            for m in re.finditer(r"^;([a-z_0-9]+) =(?: (.*))?$", main, re.M)}


def aliases():
    doc = subprocess.run([harness.BERTH_BIN, "--config-doc"], capture_output=True, text=True,
                         check=True).stdout
    return set(re.findall(r"Alias: `([a-z_0-9]+)`", doc))


def is_setting(name, settings, alias_names):
    return name in settings or name in alias_names


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def deploy_prose_and_blocks():
    """doc/deploy.md split into prose (fenced blocks removed) and {lang: [block text]}."""
    text = read(DEPLOY)
    blocks = {}
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        blocks.setdefault(m.group(1), []).append(m.group(2))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return text, prose, blocks


def test_dockerfile_builds_through_readme_setup_path():
    steps = dockerfile()
    froms = [a for _, i, a in steps if i == "FROM"]
    assert len(froms) == 2, froms
    assert all(f.split()[0] == "debian:12-slim" for f in froms), froms
    build_runs = [a for s, i, a in steps if s == 0 and i == "RUN"]
    assert build_runs == ["./setup.sh build"], build_runs

    # The README's commands are setup.sh modes; build is a mode of the same script, checked
    # before anything is installed (so this costs nothing here).
    readme = read(os.path.join(SRC, "README.md"))
    readme_modes = re.findall(r"^ {4}\./setup\.sh (\w+)$", readme, re.M)
    assert readme_modes[:2] == ["run", "check"], readme_modes
    r = subprocess.run(["bash", os.path.join(SRC, "setup.sh"), "no-such-mode"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "run|check|build" in r.stderr, (r.returncode, r.stderr)

    # Same code path: every mode installs the build packages and runs the one build step.
    setup = read(os.path.join(SRC, "setup.sh"))
    calls = re.findall(r"^\s*install_packages (.*)$", setup, re.M)
    assert len(calls) == 2 and all("$BUILD_PKGS" in c for c in calls), calls
    assert re.search(r"^build$", setup, re.M), "setup.sh must call build() for every mode"
    main = setup[setup.index("\ninstall_packages()"):]
    assert main.count("\nbuild\n") == 1


def test_build_packages_cover_configure():
    """Every pkg-config module configure.ac requires comes from a package in BUILD_PKGS."""
    setup = read(os.path.join(SRC, "setup.sh"))
    build_pkgs = set(re.search(r'BUILD_PKGS="([^"]*)"', setup).group(1).split())
    for tool in ("build-essential", "autoconf", "automake", "pkg-config"):
        assert tool in build_pkgs
    configure = read(os.path.join(SRC, "configure.ac"))
    modules = []
    for spec in re.findall(r"PKG_CHECK_MODULES\(\[\w+\],\s*\[([^\]]*)\]", configure):
        modules += [w for w in spec.split() if re.match(r"^[a-z]", w)]
    assert "libevent" in modules and "libpq" in modules, modules
    for mod in modules:
        pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", mod], capture_output=True,
                               text=True, check=True).stdout.strip()
        pc = os.path.realpath(os.path.join(pcdir, mod + ".pc"))
        owner = subprocess.run(["dpkg", "-S", pc], capture_output=True, text=True,
                               check=True).stdout.split(":")[0]
        assert owner in build_pkgs, "%s (%s) comes from %s, not in BUILD_PKGS" % (mod, pc, owner)


def runtime_packages():
    runs = [a for s, i, a in dockerfile() if s == 1 and i == "RUN" and "apt-get install" in a]
    assert len(runs) == 1, runs
    words = runs[0].split("apt-get install", 1)[1].split("&&")[0].split()
    return {w for w in words if not w.startswith("-")}


def dpkg_owner(path):
    """The Debian package that ships path. Debian 12 merges /lib into /usr/lib, and dpkg
    knows each file under one of the two names only."""
    real = os.path.realpath(path)
    tries = [path, real]
    for p in (path, real):
        tries.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for p in tries:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    raise AssertionError("no Debian package ships %s" % path)


def test_runtime_packages_match_linked_libraries():
    """The runtime stage installs exactly the packages of the libraries src/berth needs
    (plus ca-certificates and curl, which the Dockerfile says why it has)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", harness.BERTH_BIN], capture_output=True,
                                       text=True, check=True).stdout)
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
        ["ldd", harness.BERTH_BIN], capture_output=True, text=True, check=True).stdout, re.M))
    want = set()
    for lib in needed:
        if re.match(r"lib(asan|ubsan|lsan)\.so", lib):
            continue  # sanitizer builds only; the image is an ordinary build
        want.add(dpkg_owner(paths[lib]))
    want -= {"libc6", "libgcc-s1"}  # in debian:12-slim already
    assert want, needed
    have = runtime_packages()
    assert have - {"ca-certificates", "curl"} == want, (sorted(have), sorted(want))


def test_names_are_settings():
    """Every BERTH_* variable and berth setting named in the Dockerfile and doc/deploy.md
    exists in `berth --config-sample` (or is an alias); defaults quoted there are right."""
    settings, alias_names = sample_settings(), aliases()
    text, prose, _ = deploy_prose_and_blocks()
    docker = read(DOCKERFILE)
    for var in set(re.findall(r"\bBERTH_[A-Z0-9_]+", docker + text)):
        assert is_setting(var[len("BERTH_"):].lower(), settings, alias_names), var
    for k in docker_env():
        assert k.startswith("BERTH_") or k == "DATABASE_URL", k

    names = set()
    for span in re.findall(r"`([^`\n]+)`", prose):
        m = re.match(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b", span)
        if m and not m.group(1).startswith("berth_"):  # berth_* are metrics: see below
            names.add(m.group(1))
    unknown = {n for n in names if not is_setting(n, settings, alias_names)
               and n not in FOREIGN_NAMES}
    assert not unknown, "not berth settings (nor in FOREIGN_NAMES): %s" % sorted(unknown)
    assert {"default_pool_size", "max_db_connections", "shutdown_timeout",
            "so_reuseport"} <= names
    for name, default in re.findall(r"`([a-z_0-9]+)` \(default ([0-9.]+)", prose):
        if name in settings:
            assert settings[name] == default, (name, default, settings[name])


def test_exposed_ports_match_listen_env():
    env = docker_env()
    exposed = set()
    for _, instr, args in dockerfile():
        if instr == "EXPOSE":
            exposed |= {int(p.split("/")[0]) for p in args.split()}
    assert exposed == {port_of(env["BERTH_LISTEN"]), port_of(env["BERTH_HTTP_LISTEN"])}, \
        (exposed, env)
    assert env["BERTH_LISTEN"].startswith("0.0.0.0:")
    assert env["BERTH_HTTP_LISTEN"].startswith("0.0.0.0:")
    stops = [a for _, i, a in dockerfile() if i == "STOPSIGNAL"]
    assert stops == ["SIGTERM"], stops
    user = [a for s, i, a in dockerfile() if s == 1 and i == "USER"]
    assert user and not user[-1].startswith(("0", "root")), user


def healthcheck_cmd():
    hc = [a for _, i, a in dockerfile() if i == "HEALTHCHECK"]
    assert len(hc) == 1, hc
    cmd = hc[0].split(" CMD ", 1)[1]
    assert not cmd.startswith("["), "shell form expected (it expands BERTH_HTTP_LISTEN)"
    return cmd


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_http(url, deadline=5.0):
    end = time.monotonic() + deadline
    while True:
        try:
            return http_get(url)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_healthcheck_command_against_real_berth(berth):
    """The image's HEALTHCHECK command, run as the container would run it, passes against a
    berth listening where BERTH_HTTP_LISTEN says, and fails once that berth is gone."""
    cmd = healthcheck_cmd()
    assert "/health" in cmd
    port = free_port()
    b = berth("transaction", http_listen="127.0.0.1:%d" % port)
    assert wait_http("http://127.0.0.1:%d/health" % port)[0] == 200
    env = dict(os.environ, BERTH_HTTP_LISTEN="0.0.0.0:%d" % port)
    ok = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    b.stop()
    down = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True,
                          timeout=10)
    assert down.returncode == 1, (down.returncode, down.stderr)


def test_metrics_named_in_guide_exist(berth):
    """Every berth_* metric doc/deploy.md names is a family /metrics serves."""
    text, _, _ = deploy_prose_and_blocks()
    named = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bberth_[a-z_]+", text)}
    named.discard("berth_")
    assert "berth_upstream_up" in named and "berth_client_wait_seconds" in named, named
    port = free_port()
    berth("transaction", http_listen="127.0.0.1:%d" % port)
    status, body = wait_http("http://127.0.0.1:%d/metrics" % port)
    assert status == 200
    families = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    assert named <= families, "named in doc/deploy.md, not served: %s" % sorted(named - families)


def k8s_objects():
    _, _, blocks = deploy_prose_and_blocks()
    objs = []
    for b in blocks.get("yaml", []):
        for d in yaml.safe_load_all(b):
            if isinstance(d, dict) and "kind" in d:
                objs.append(d)
    return {d["kind"]: d for d in objs}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def sleep_seconds(container):
    cmd = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(cmd[1]) if cmd[:1] == ["sleep"] else 0


def test_kubernetes_example_consistent():
    settings, alias_names = sample_settings(), aliases()
    objs = k8s_objects()
    secret, dep = objs["Secret"], objs["Deployment"]
    spec = dep["spec"]["template"]["spec"]
    cs = {c["name"]: c for c in spec["containers"]}
    b, app = cs["berth"], cs["app"]
    benv = env_of(b)
    for k in benv:
        assert k == "DATABASE_URL" or is_setting(k[len("BERTH_"):].lower(), settings,
                                                 alias_names), k
    http_port = port_of(benv["BERTH_HTTP_LISTEN"])
    assert b["livenessProbe"]["httpGet"] == {"path": "/health", "port": http_port}
    assert b["readinessProbe"]["httpGet"] == {"path": "/ready", "port": http_port}
    ports = {p["containerPort"] for p in b["ports"]}
    assert ports == {port_of(benv["BERTH_LISTEN"]), http_port}, ports
    assert benv["BERTH_LISTEN"].startswith("127.0.0.1:")

    # The app reaches berth where berth listens, as the user/password/db berth's URL names.
    up = urllib.parse.urlsplit(secret["stringData"][benv["DATABASE_URL"]["secretKeyRef"]["key"]])
    via = urllib.parse.urlsplit(
        secret["stringData"][env_of(app)["DATABASE_URL"]["secretKeyRef"]["key"]])
    assert "%s:%d" % (via.hostname, via.port) == benv["BERTH_LISTEN"]
    assert (via.username, via.password, via.path) == (up.username, up.password, up.path)

    # The kubelet's SIGKILL must not cut the drain short.
    shutdown = float(benv.get("BERTH_SHUTDOWN_TIMEOUT", settings["shutdown_timeout"]))
    prestop = max(sleep_seconds(c) for c in cs.values())
    assert spec["terminationGracePeriodSeconds"] > prestop + shutdown
    res = b["resources"]
    assert "requests" in res and "memory" in res["limits"]


def test_compose_example_consistent():
    _, _, blocks = deploy_prose_and_blocks()
    compose = [yaml.safe_load(b) for b in blocks["yaml"] if b.startswith("services:")]
    assert len(compose) == 1
    svc = compose[0]["services"]
    b, app = svc["berth"], svc["app"]
    settings = sample_settings()
    shutdown = float(b["environment"].get("BERTH_SHUTDOWN_TIMEOUT",
                                          settings["shutdown_timeout"]))
    assert float(b["stop_grace_period"].rstrip("s")) > shutdown
    image_listen = docker_env()["BERTH_LISTEN"]
    via = urllib.parse.urlsplit(app["environment"]["DATABASE_URL"])
    assert (via.hostname, via.port) == ("berth", port_of(image_listen))
    published = {int(p.rsplit(":", 1)[1]) for p in b["ports"]}
    assert published == {port_of(image_listen), port_of(docker_env()["BERTH_HTTP_LISTEN"])}
