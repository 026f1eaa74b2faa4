"""Inline secret values are refused, located, and never repeated in the report.

The spec may only refer to secrets (meshctl.inline_secrets). Every string of the
bundled example is replaced in turn by a private key, an AWS access key id and
a JWT; secret-named keys are added to free-form maps and overrides; and the
specs meshctl ships or tests, with their secret references, stay valid. The
bad-input corpus (tests/cases/invalid) holds the end-to-end cases.

The spec variants run through the CLI's entry point in this process (hundreds
of them; a subprocess each would take minutes); the corpus runs the real
subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from meshctl import yamlio
from meshctl.cli import main
from meshctl.inline_secrets import inline_secret_problems
from meshctl.load import parse_source
from meshctl.paths import format_path
from meshctl.resources import example_spec, profiles_dir

from conftest import Run, valid_specs

ADVICE = "the spec may only refer to secrets (see docs/secrets.md)"

# Fakes in the shapes of real credentials. The ones secret scanners know by
# prefix are assembled here, so the repository holds no token-shaped text.
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEXnotarealkeyEXAMPLEEXAMPLEEXAMPLE\n"
    "-----END RSA PRIVATE KEY-----\n"
)
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJleGFtcGxlIn0.c2lnbmF0dXJlLW5vdC1yZWFs"
GITHUB_TOKEN = "ghp" + "_" + "A1b2C3d4E5f6G7h8I9j0" * 2
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0" + "x" * 12 + "_" + "Y" * 59
SLACK_TOKEN = "xox" + "b-1234567890-0987654321-" + "AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE_KEY = "AI" + "za" + "SyA-" + "1234567890abcdefghijklmnopqrstu"
STRIPE_KEY = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"

SECRETS = {"private-key": PRIVATE_KEY, "aws-key-id": AWS_KEY_ID, "jwt": JWT}
KINDS = {
    "private-key": "a private key block",
    "aws-key-id": "an AWS access key id",
    "jwt": "a JSON Web Token",
}


def message(kind: str) -> str:
    return f"looks like an inline secret value ({kind}); {ADVICE}"


NAMED = message("its key names a secret")


def secret_parts(secret: str) -> list[str]:
    """The text of a secret that must not reach the output (each line of a key block)."""
    return [line for line in secret.splitlines() if line]


def validate(spec: Path) -> Run:
    """`meshctl validate SPEC`, through the CLI's entry point."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.raises(SystemExit) as exit_info,
    ):
        main(["validate", str(spec)])
    code = exit_info.value.code
    return Run(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())


# --------------------------------------------------------------------------
# (a) Every string of the example, replaced by a secret


@dataclass(frozen=True)
class Scalar:
    path: yamlio.Path
    start: int  # offsets of the scalar's text (quotes included) in the file
    end: int
    line: int
    column: int


def _string_scalars(text: str) -> list[Scalar]:
    """Every string value of a YAML text, with where its text is."""
    found: list[Scalar] = []

    def walk(node: yaml.Node, path: yamlio.Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))
        elif node.tag == "tag:yaml.org,2002:str":
            start, end = node.start_mark, node.end_mark
            found.append(Scalar(path, start.index, end.index, start.line + 1, start.column + 1))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert root is not None
    walk(root, ())
    return found


EXAMPLE = example_spec().read_text(encoding="utf-8")
SCALARS = _string_scalars(EXAMPLE)


def _strings(data: object, path: yamlio.Path = ()) -> Iterator[yamlio.Path]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _strings(value, (*path, index))
    elif isinstance(data, str):
        yield path


def test_the_variants_cover_every_string_of_the_example() -> None:
    """The YAML 1.1 reader used to find the text agrees with meshctl's on what is a string."""
    data = yamlio.parse_document(EXAMPLE).data
    assert sorted(map(format_path, _strings(data))) == sorted(format_path(s.path) for s in SCALARS)
    assert len(SCALARS) > 40


@pytest.fixture(scope="module")
def replaced(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[Path, Run]]:
    """`meshctl validate` of the example with one string replaced by one secret, for each."""
    root = tmp_path_factory.mktemp("replaced")
    runs = {}
    for name, secret in SECRETS.items():
        for number, scalar in enumerate(SCALARS):
            text = EXAMPLE[: scalar.start] + json.dumps(secret) + EXAMPLE[scalar.end :]
            folder = root / f"{name}-{number}"
            folder.mkdir()
            spec = folder / "platform.yaml"
            spec.write_text(text, encoding="utf-8")
            runs[name, format_path(scalar.path)] = (spec, validate(spec))
    return runs


@pytest.mark.parametrize("scalar", SCALARS, ids=lambda s: format_path(s.path))
@pytest.mark.parametrize("name", list(SECRETS))
def test_a_secret_in_any_string_is_refused_at_its_place(
    name: str, scalar: Scalar, replaced: dict[tuple[str, str], tuple[Path, Run]]
) -> None:
    spec, run = replaced[name, format_path(scalar.path)]
    assert run.code == 1, run.stdout + run.stderr
    assert run.stderr == ""
    expected = (
        f"{spec}:{scalar.line}:{scalar.column}: {format_path(scalar.path)}: {message(KINDS[name])}"
    )
    lines = run.stdout.splitlines()
    assert expected in lines, run.stdout
    ours = [line for line in lines if "inline secret" in line]
    assert ours == [expected]
    for part in secret_parts(SECRETS[name]):
        assert part not in expected


def test_no_message_repeats_the_secret(
    replaced: dict[tuple[str, str], tuple[Path, Run]],
) -> None:
    leaks = [
        f"{name} in {path}"
        for (name, path), (_, run) in replaced.items()
        if any(part[:20] in run.stdout for part in secret_parts(SECRETS[name]))
    ]
    assert leaks == []


# --------------------------------------------------------------------------
# (b) Secret-named keys in free-form maps and overrides

ANNOTATION = "        service.beta.kubernetes.io/aws-load-balancer-type: nlb\n"
PROD_GATEWAY = (
    "      overrides:\n        gateway:\n          autoscaling:\n            maxReplicas: 30\n"
)


@pytest.mark.parametrize(
    ("after", "added", "path"),
    [
        (
            ANNOTATION,
            "        password: hunter2\n",
            "spec.gateway.proxy.annotations.password",
        ),
        (
            ANNOTATION,
            "        apiToken: abc\n",
            "spec.gateway.proxy.annotations.apiToken",
        ),
        (
            PROD_GATEWAY,
            "          proxy:\n            annotations:\n              password: hunter2\n",
            "spec.environments.prod.overrides.gateway.proxy.annotations.password",
        ),
        (
            PROD_GATEWAY,
            "          proxy:\n            annotations:\n              apiToken: abc\n",
            "spec.environments.prod.overrides.gateway.proxy.annotations.apiToken",
        ),
        (
            PROD_GATEWAY,
            "        password: hunter2\n",  # an unknown key, too
            "spec.environments.prod.overrides.password",
        ),
    ],
)
def test_a_secret_named_key_is_refused_in_free_form_maps_and_overrides(
    after: str, added: str, path: str, tmp_path: Path
) -> None:
    assert EXAMPLE.count(after) == 1
    head = EXAMPLE[: EXAMPLE.index(after) + len(after)]
    line = head.count("\n") + added.count("\n")
    last = added.splitlines()[-1]
    column = last.index(": ") + 3
    spec = tmp_path / "platform.yaml"
    spec.write_text(head + added + EXAMPLE[len(head) :], encoding="utf-8")
    run = validate(spec)
    assert run.code == 1
    expected = f"{spec}:{line}:{column}: {path}: {NAMED}"
    assert expected in run.stdout.splitlines(), run.stdout
    value = last.split(": ")[1]
    assert f"'{value}'" not in run.stdout
    assert f" {value}" not in run.stdout


def test_a_secret_in_a_project_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "platform.yaml").write_text(
        EXAMPLE.replace("      profile: staging\n", "      profile: perf\n"), encoding="utf-8"
    )
    (tmp_path / "profiles").mkdir()
    profile = tmp_path / "profiles" / "perf.yaml"
    profile.write_text(
        "name: perf\ndescription: Load tests\nextends: prod\nsettings:\n  gateway:\n"
        "    proxy:\n      annotations:\n        example.com/api-token: abc\n",
        encoding="utf-8",
    )
    run = validate(tmp_path / "platform.yaml")
    assert run.code == 1
    assert run.stdout.splitlines()[0] == (
        f'{profile}:8:32: settings.gateway.proxy.annotations["example.com/api-token"]: {NAMED}'
    )


# --------------------------------------------------------------------------
# (c) References and ordinary text stay valid


@pytest.mark.parametrize(("name", "spec"), list(valid_specs().items()))
def test_the_valid_specs_stay_valid(name: str, spec: Path) -> None:
    run = validate(spec)
    assert run.code == 0, run.stdout


def test_the_built_in_profiles_hold_no_secret_values() -> None:
    """They are not checked on load (meshctl's own data): checked here."""
    for path in sorted(profiles_dir().glob("*.yaml")):
        assert inline_secret_problems(parse_source(path.read_bytes(), path.name)) == []


def test_references_and_words_about_secrets_stay_valid(tmp_path: Path) -> None:
    text = EXAMPLE
    for old, new in [
        (
            "  gateway:\n    proxy:\n",
            "  gateway:\n    database:\n      mode: postgres\n"
            "      host: kong-db.data.svc.cluster.local\n      database: kong\n      user: kong\n"
            "      passwordSecret: {name: kong-db, key: password}\n"
            "      caSecret: {name: kong-db-ca, key: ca.crt}\n    proxy:\n",
        ),
        ("    - host: console\n", "    - host: token.ai.example.com\n"),
        (
            '    description: "Embedding model server"\n',
            "    description: rotate the secret weekly\n",
        ),
        (
            ANNOTATION,
            ANNOTATION + '        vault.hashicorp.com/agent-inject-token: "true"\n'
            "        example.com/token-audience: api.ai.example.com\n",
        ),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    spec = tmp_path / "platform.yaml"
    spec.write_text(text, encoding="utf-8")
    run = validate(spec)
    assert run.code == 0, run.stdout


# --------------------------------------------------------------------------
# The rules, one value at a time


def _problems(text: str) -> list[str]:
    return [str(p) for p in inline_secret_problems(parse_source(text.encode(), "s.yaml"))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Keys that name a secret, with a literal value
        ("password: hunter2\n", f"s.yaml:1:11: password: {NAMED}"),
        ("db:\n  DB_PASSWORD: x\n", f"s.yaml:2:16: db.DB_PASSWORD: {NAMED}"),
        ("passwd: x\n", f"s.yaml:1:9: passwd: {NAMED}"),
        ("pwd: 1234\n", f"s.yaml:1:6: pwd: {NAMED}"),
        ("sshPassphrase: x\n", f"s.yaml:1:16: sshPassphrase: {NAMED}"),
        ("api-token: x\n", f"s.yaml:1:12: api-token: {NAMED}"),
        ('"auth token": x\n', f's.yaml:1:15: ["auth token"]: {NAMED}'),
        ("x-api-key: x\n", f"s.yaml:1:12: x-api-key: {NAMED}"),
        ("accessKey: x\n", f"s.yaml:1:12: accessKey: {NAMED}"),
        ("secretAccessKey: x\n", f"s.yaml:1:18: secretAccessKey: {NAMED}"),
        ("secretKey: x\n", f"s.yaml:1:12: secretKey: {NAMED}"),
        ("privateKey: x\n", f"s.yaml:1:13: privateKey: {NAMED}"),
        ("clientSecret: x\n", f"s.yaml:1:15: clientSecret: {NAMED}"),
        ("webhook_secret: x\n", f"s.yaml:1:17: webhook_secret: {NAMED}"),
        ("secret: x\n", f"s.yaml:1:9: secret: {NAMED}"),
        ("bearer: x\n", f"s.yaml:1:9: bearer: {NAMED}"),
        ("Authorization: Basic x\n", f"s.yaml:1:16: Authorization: {NAMED}"),
        (
            "a:\n  example.com/db-password: 42\n",
            f's.yaml:2:28: a["example.com/db-password"]: {NAMED}',
        ),
        # Credential formats, wherever they are
        (
            f"description: {AWS_KEY_ID}\n",
            f"s.yaml:1:14: description: {message(KINDS['aws-key-id'])}",
        ),
        (f"a: [ok, {JWT}]\n", f"s.yaml:1:9: a[1]: {message(KINDS['jwt'])}"),
        (f"a: {json.dumps(PRIVATE_KEY)}\n", f"s.yaml:1:4: a: {message(KINDS['private-key'])}"),
        (
            "a: -----BEGIN PGP PRIVATE KEY BLOCK----- x\n",
            f"s.yaml:1:4: a: {message('a private key block')}",
        ),
        (
            "a: -----BEGIN OPENSSH PRIVATE KEY----- x\n",
            f"s.yaml:1:4: a: {message('a private key block')}",
        ),
        ("a: -----BEGIN PRIVATE KEY----- x\n", f"s.yaml:1:4: a: {message('a private key block')}"),
        ("a: ASIAIOSFODNN7EXAMPLE\n", f"s.yaml:1:4: a: {message('an AWS access key id')}"),
        (f"a: {GITHUB_TOKEN}\n", f"s.yaml:1:4: a: {message('a GitHub token')}"),
        (f"a: {GITHUB_PAT}\n", f"s.yaml:1:4: a: {message('a GitHub token')}"),
        (f"a: {SLACK_TOKEN}\n", f"s.yaml:1:4: a: {message('a Slack token')}"),
        (f"a: {GOOGLE_KEY}\n", f"s.yaml:1:4: a: {message('a Google API key')}"),
        (f"a: {STRIPE_KEY}\n", f"s.yaml:1:4: a: {message('a Stripe live key')}"),
        (
            "a: postgres://kong:s3cret@db.example.com:5432/kong\n",
            f"s.yaml:1:4: a: {message('a URL with a password')}",
        ),
        ("a: redis://:s3cret@redis:6379\n", f"s.yaml:1:4: a: {message('a URL with a password')}"),
        (f"a: Bearer {JWT}\n", f"s.yaml:1:4: a: {message(KINDS['jwt'])}"),
        # A secret-named key holding a token: one problem, the token's
        (f"token: {JWT}\n", f"s.yaml:1:8: token: {message(KINDS['jwt'])}"),
        # A token as a key: reported at the key, the path stops at its mapping
        (
            f"a:\n  {AWS_KEY_ID}: x\n",
            f"s.yaml:2:3: a: a key here looks like an inline secret value "
            f"({KINDS['aws-key-id']}); {ADVICE}",
        ),
        # The whole document
        (f"{AWS_KEY_ID}\n", f"s.yaml:1:1: {message(KINDS['aws-key-id'])}"),
    ],
)
def test_what_is_refused(text: str, expected: str) -> None:
    assert _problems(text) == [expected]


def test_a_token_used_as_a_key_is_redacted_in_paths_below_it() -> None:
    assert _problems(f"a:\n  {AWS_KEY_ID}:\n    password: x\n") == [
        f"s.yaml:2:3: a: a key here looks like an inline secret value "
        f"({KINDS['aws-key-id']}); {ADVICE}",
        f's.yaml:3:15: a["<redacted>"].password: {NAMED}',
    ]


@pytest.mark.parametrize(
    "text",
    [
        # meshctl's own references and switches
        "passwordSecret: {name: kong-db, key: password}\n",
        "caSecret: {name: kong-db-ca, key: ca.crt}\n",
        "passwordSecret: kong-db\n",
        "caSecret: kong-db-ca\n",
        "secretRef: {name: x}\n",
        "existingSecret: kong-db\n",
        "remoteKey: team/db\n",
        "property: password\n",
        "key: password\n",
        "secretName: kong-db\n",
        "tlsSecret: example-tls\n",
        "cors: {credentials: true}\n",
        "objectStorage: {credentials: store}\n",
        "limitBy: credential\n",
        # No value, or not a literal
        "password: null\n",
        "password:\n",
        'password: ""\n',
        "password: [a, b]\n",
        "token: {name: x, key: y}\n",
        "secret: true\n",
        'example.com/agent-inject-token: "true"\n',
        "apiToken: off\n",
        # Keys that only contain a secret word
        "maxTokens: 4096\n",
        "tokenTTL: 5m\n",
        "token-audience: api.example.com\n",
        "passwordPolicy: strong\n",
        "password_encryption: scram-sha-256\n",
        "publicKey: x\n",
        "accessKeyId: x\n",
        "description: rotate the secret weekly, never commit a password or token\n",
        "reason: the token endpoint is public\n",
        # Strings that only resemble a credential
        "host: token.ai.example.com\n",
        "host: akia.example.com\n",
        "hosts: [secret.example.com, password.example.com, eyj.example.com]\n",
        "path: /v1/tokens\n",
        "a: spiffe://cluster.local/ns/ai-api/sa/api\n",
        'schedule: "0 0 3 * * *"\n',
        "repoURL: git@github.com:acme/platform-gitops.git\n",
        "repoURL: ssh://git@github.com/acme/platform-gitops.git\n",
        "repoURL: https://github.com/acme/platform-gitops.git\n",
        "email: platform@ai.example.com\n",
        "serviceAccount: eso@acme-prod.iam.gserviceaccount.com\n",
        "roleArn: arn:aws:iam::123456789012:role/external-secrets\n",
        "image: ghcr.io/acme/api:1.2@sha256:" + "a" * 64 + "\n",
        "a: -----BEGIN CERTIFICATE----- x\n",
        "a: -----BEGIN PUBLIC KEY----- x\n",
        "a: the PRIVATE KEY stays in the store\n",
        f"a: {AWS_KEY_ID}X\n",
        f"a: x{AWS_KEY_ID}\n",
        "a: AKIAIOSFODNN7EXAMPL\n",
        "a: eyJ.two.parts\n",
        "a: ghp_short\n",
        "a: sk_test_4eC39HqLyjWDarjtT1zdp7dc\n",
        "a: my_github_pat_notes\n",
        "a: https://host:8443/path\n",
        "a: https://user@host/path\n",
        "a: mailto:someone@example.com\n",
    ],
)
def test_what_is_accepted(text: str) -> None:
    assert _problems(text) == []
