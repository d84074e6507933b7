"""``/docs`` works offline and the OpenAPI document is complete, checked through HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

from imgdex.testing import image_bytes

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head")


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def test_docs_page_references_only_its_own_origin(imgdex_client: Any) -> None:
    page = imgdex_client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text)
    assert len(urls) >= 3  # the script, the preset and the stylesheet at least
    assert not re.search(r"https?://|//[a-z]", page.text, re.I), "an outside host is named"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = imgdex_client.get(url)
        assert asset.status_code == 200, url
        assert asset.content
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    assert imgdex_client.get("/docs/openapi.json").status_code == 200


def test_openapi_admin_endpoints_use_the_bearer_scheme(imgdex_client: Any) -> None:
    spec = imgdex_client.get("/docs/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    # Credentials by default: a bearer key or token, or a login session's cookie.
    assert spec["security"] == [{"bearer": []}, {"cookie": []}]
    admin = [(m, p, op) for m, p, op in operations(spec) if p.startswith("/api/admin/")]
    assert len(admin) >= 10
    for method, path, op in admin:
        assert "security" not in op, (method, path)  # the document's default applies
        assert {"401", "403"} <= set(op["responses"]), (method, path)
        assert "'admin'" in op["description"], (method, path)
    # What needs no credentials says so explicitly.
    public = {p for _, p, op in operations(spec) if op.get("security") == [{}]}
    assert {"/health", "/api/auth/login"} <= public


def test_openapi_binary_and_error_responses(imgdex_client: Any) -> None:
    spec = imgdex_client.get("/docs/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/images/{sha256}/file", "/api/images/{sha256}/thumbnail"):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert any(kind.startswith("image/") for kind in content), path
        for media in content.values():
            assert media["schema"] == {"type": "string", "format": "binary"}
        assert {"400", "404"} <= set(paths[path]["get"]["responses"])
    expected = {
        ("post", "/api/images"): {"400", "409", "413", "415", "422"},
        ("post", "/api/search/text"): {"400", "404", "409", "503"},
        ("post", "/api/search/image"): {"400", "404", "409", "413", "415", "422", "503"},
        ("post", "/api/search/image/base64"): {"400", "413", "415", "422", "503"},
        ("get", "/api/images/{sha256}"): {"400", "404"},
        ("post", "/api/images/{sha256}/descriptions"): {"400", "404", "409"},
        ("delete", "/api/admin/indexes/{name}"): {"401", "404", "409"},
    }
    for (method, path), statuses in expected.items():
        assert statuses <= set(paths[path][method]["responses"]), (method, path)
    error_ref = {"$ref": "#/components/schemas/Error"}
    error = spec["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"status_code", "error", "detail"}
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == error_ref, (
                    method,
                    path,
                    status,
                )


def test_openapi_describes_every_parameter_and_field(imgdex_client: Any) -> None:
    spec = imgdex_client.get("/docs/openapi.json").json()
    for method, path, op in operations(spec):
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
            if parameter["name"] == "sha256":
                assert parameter["schema"]["pattern"] == "^[0-9a-f]{32}$"
    undescribed = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not undescribed
    form = spec["paths"]["/api/search/image"]["post"]["requestBody"]["content"]
    fields = form["multipart/form-data"]["schema"]["properties"]
    options = spec["components"]["schemas"]["SearchTextRequest"]["properties"]
    # The form takes every search option of the JSON request (the filters as plain
    # fields), and the file.
    filters = spec["components"]["schemas"]["ImageFilters"]["properties"]
    assert set(fields) == (set(options) - {"query", "filters"}) | set(filters) | {"file"}
    assert all(prop.get("description") for prop in fields.values())


def test_405_carries_allow(imgdex_client: Any) -> None:
    r = imgdex_client.put("/api/stats")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) == {"GET", "OPTIONS"}
    r = imgdex_client.patch("/api/images")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= {"GET", "POST"}


def test_image_search_form_takes_weights(imgdex_client: Any) -> None:
    client = imgdex_client
    files = {"file": ("a.png", image_bytes("red"), "image/png")}
    client.post("/api/images", files=files)
    r = client.post(
        "/api/search/image", files=files, data={"weights": json.dumps({"toy_color_v1": 2})}
    )
    assert r.status_code == 200 and r.json()["results"]
    r = client.post("/api/search/image", files=files, data={"weights": json.dumps({"nope": 1})})
    assert r.status_code == 400 and r.json()["error"] == "unknown_index"
    r = client.post("/api/search/image", files=files, data={"weights": "[1"})
    assert r.status_code == 400 and "weights" in r.json()["detail"]
