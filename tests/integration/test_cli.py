"""The command line: -t, --version, --help, and start-up errors."""
import re


GOOD = """# a valid configuration
domain sandbox.localhost
listen 127.0.0.1:18080
redis_url redis://127.0.0.1:6379/0
route_cache_ttl 2s
route_negative_ttl 500ms
max_header_size 32k
log_level info
"""


def check(build, path):
    result = build.run("-t", "-c", str(path))
    return result.returncode, result.stdout + result.stderr


def test_check_good_file(build, tmp_path):
    path = tmp_path / "good.conf"
    path.write_text(GOOD)
    code, output = check(build, path)
    assert code == 0, output
    assert f"{path}: ok" in output


def test_check_unknown_directive(build, tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(GOOD + "no_such_directive 1\n")
    code, output = check(build, path)
    assert code == 1, output
    assert re.search(rf"{re.escape(str(path))}:9: \S", output), output


def test_check_bad_value(build, tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(GOOD.replace("route_cache_ttl 2s", "route_cache_ttl soon"))
    code, output = check(build, path)
    assert code == 1, output
    assert re.search(rf"{re.escape(str(path))}:5: \S", output), output


def test_check_missing_required(build, tmp_path):
    path = tmp_path / "nodomain.conf"
    path.write_text(GOOD.replace("domain sandbox.localhost\n", ""))
    code, output = check(build, path)
    assert code == 1, output
    assert str(path) in output and "domain" in output, output


def test_check_missing_file(build, tmp_path):
    path = tmp_path / "absent.conf"
    code, output = check(build, path)
    assert code == 1, output
    assert str(path) in output


def test_start_with_bad_file_exits_1(build, tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text(GOOD + "listen nowhere\n")
    result = build.run("-c", str(path), timeout=20)
    assert result.returncode == 1, result
    assert f"{path}:9:" in result.stdout + result.stderr


def test_version(build):
    result = build.run("--version")
    assert result.returncode == 0, result
    assert re.search(r"\d+\.\d+\.\d+", result.stdout + result.stderr), result


def test_help(build):
    result = build.run("--help")
    assert result.returncode == 0, result
    output = result.stdout + result.stderr
    assert "-c" in output and "-t" in output, output
