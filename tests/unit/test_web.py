"""The web front end on a bare FastAPI app: pages, vendored assets, offline Swagger UI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app.api.errors import install_error_handlers
from serve_app.web import install_web
from serve_app.web.assets import VENDORED, missing, unresolved_imports, vendor
from serve_app.web.routes import STATIC_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "node_modules"


@pytest.fixture(scope="module")
def vendor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (NODE_MODULES / "three").is_dir() or not (NODE_MODULES / "swagger-ui-dist").is_dir():
        pytest.fail("node_modules lacks three or swagger-ui-dist: run `make setup`")
    dest = tmp_path_factory.mktemp("web") / "vendor"
    assert vendor(NODE_MODULES, dest) is True
    return dest


def client_for(vendor_dir: Path) -> TestClient:
    app = FastAPI(title="web test", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    install_web(app, vendor_dir=vendor_dir)
    return TestClient(app)


def test_studio_page_is_served_with_an_import_map(vendor_dir: Path) -> None:
    response = client_for(vendor_dir).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    imports = json.loads(
        re.search(r'<script type="importmap">(.*?)</script>', response.text, re.S).group(1)
    )["imports"]
    # Relative to the page's base, so the studio works under any route prefix.
    assert imports == {
        "three": "./vendor/three/build/three.module.js",
        "three/addons/": "./vendor/three/addons/",
    }
    assert '<base href="/">' in response.text


def test_studio_page_base_is_the_route_prefix(vendor_dir: Path) -> None:
    app = FastAPI(title="web test", docs_url=None, redoc_url=None)
    install_web(app, vendor_dir=vendor_dir)
    prefixed = TestClient(app, root_path="/studio")
    page = prefixed.get("/").text
    assert page.count("<base ") == 1 and '<base href="/studio/">' in page
    # Every address the page and its scripts use is relative to that base.
    addresses = re.findall(r'(?:src|href)="([^"]+)"', page.replace('<base href="/studio/">', ""))
    assert addresses and all(not a.startswith("/") for a in addresses), addresses
    # An import map takes relative addresses only in the "./" form.
    imports = re.search(r'<script type="importmap">(.*?)</script>', page, re.S)
    assert imports and all(
        v.startswith("./") for v in json.loads(imports.group(1))["imports"].values()
    )
    for script in sorted((STATIC_DIR / "js").glob("*.js")):
        text = script.read_text()
        absolute = re.findall(r"""(?:fetch|request|EventSource|WebSocket)\(\s*[`"']/""", text)
        assert not absolute, f"{script.name} uses an absolute address: {absolute}"
        assert not re.search(r"""[`"']/(api|ws|download|static|vendor)/""", text), script.name


def test_static_and_vendored_files_are_served(vendor_dir: Path) -> None:
    client = client_for(vendor_dir)
    script = client.get("/static/js/studio.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    three = client.get("/vendor/three/build/three.module.js")
    assert three.status_code == 200
    assert "javascript" in three.headers["content-type"]
    assert client.get("/vendor/three/addons/loaders/GLTFLoader.js").status_code == 200
    assert client.get("/vendor/nothing-here.js").status_code == 404


def test_api_docs_load_swagger_ui_from_this_service(vendor_dir: Path) -> None:
    client = client_for(vendor_dir)
    html = client.get("/api/docs").text
    assert "/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "/vendor/swagger-ui/swagger-ui.css" in html
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assert not re.search(r"https?://", html), "the docs page names an outside host"
    for url in re.findall(r'(?:src|href)="(/vendor/[^"]+)"', html):
        assert client.get(url).status_code == 200, url
    assert "/api/docs" not in client.get("/openapi.json").json()["paths"]


def test_missing_vendor_answers_503_naming_the_fix(tmp_path: Path) -> None:
    client = client_for(tmp_path / "absent")
    assert client.get("/").status_code == 200
    for path in ("/api/docs", "/vendor/three/build/three.module.js"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert int(response.headers["Retry-After"]) >= 1
        error = response.json()["error"]
        assert error["code"] == "assets_missing"
        assert "make setup" in error["message"]


def test_vendoring_is_stamped_and_complete(vendor_dir: Path) -> None:
    assert missing(vendor_dir) == []
    assert unresolved_imports(vendor_dir) == []
    assert vendor(NODE_MODULES, vendor_dir) is False
    (vendor_dir / "three/build/three.core.js").unlink()
    assert vendor(NODE_MODULES, vendor_dir) is True
    assert missing(vendor_dir) == []


def test_page_modules_import_only_files_that_exist() -> None:
    index = (STATIC_DIR / "index.html").read_text()
    mapped = {"three": "three/build/three.module.js"}
    for script in sorted((STATIC_DIR / "js").glob("*.js")):
        text = script.read_text()
        for target in re.findall(r"""(?:from|import\()\s*["']([^"']+)["']""", text):
            if target.startswith("./"):
                assert (script.parent / target).is_file(), f"{script.name} imports {target}"
            elif target.startswith("three/addons/"):
                assert target in VENDORED, f"{script.name} imports {target}, not vendored"
            else:
                assert target in mapped, f"{script.name} imports {target}, not in the import map"
        for element_id in re.findall(r"""\$\("([\w-]+)"\)""", text):
            assert f'id="{element_id}"' in index, f"{script.name} uses #{element_id}"
