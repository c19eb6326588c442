"""``spec.expose``: how a Chute is reached from outside its namespace (an HTTPRoute, an Ingress, an
InferencePool), each only where the cluster serves its API."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from chute_operator.api.base import ApiModel, Rule, enforce, rules_schema
from chute_operator.k8s_labels import key_problem

HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS name in lowercase, optionally with a leading ``*.`` (the Gateway API's and the Ingress's rule)."""
PATH_CHARACTERS = r"^/[-A-Za-z0-9/._~!$&()+,;=:@]*$"
"""A URL path: '/', then letters, digits and what RFC 3986 allows unescaped (no quote, '*' or '%')."""
DOT_SEGMENT = r"/\.\.?(/|$)"
"""A '.' or '..' segment, which gateways normalise away (the Gateway API refuses them)."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Hostname = Annotated[str, StringConstraints(max_length=253)]
IP_ADDRESS = r"^[0-9.]+$"
"""A name of digits and dots: an IPv4 address, which an Ingress rule's host may not be."""
SNIPPET_ANNOTATION = re.compile(r"(^|/)([-A-Za-z0-9_.]*-)?snippets?$")
"""An ingress controller's raw-configuration annotation (ingress-nginx ``configuration-snippet``,
``server-snippet``, ``auth-snippet``; NGINX's ``nginx.org/location-snippets``; HAProxy's
``backend-config-snippet``): it writes into the controller's configuration for every host."""


def path_ok(path: str | None) -> bool:
    """Whether a path is one every gateway takes as written (see PATH_CHARACTERS and DOT_SEGMENT)."""
    return path is None or (
        re.match(PATH_CHARACTERS, path) is not None and "//" not in path and not re.search(DOT_SEGMENT, path)
    )


def path_rule(where: str, field: str, attribute: str) -> Rule:
    """The rule of an optional path field: absolute, URL characters only, no '//', '.' or '..' segment."""
    return Rule(
        cel=f"!has(self.{field}) || (self.{field}.matches(r'{PATH_CHARACTERS}') && "
        f"!self.{field}.contains('//') && !self.{field}.matches(r'{DOT_SEGMENT}'))",
        message=f"{where}.{field} must start with '/' and hold only URL path characters (letters, digits, "
        "- . _ ~ ! $ & ( ) + , ; = : @ /), with no '//' and no '.' or '..' segment",
        field_path=f".{field}",
        check=lambda m: path_ok(getattr(m, attribute)),
    )


def hostname_ok(host: str) -> bool:
    return re.match(HOSTNAME_PATTERN, host) is not None


class ParentRef(ApiModel):
    """A Gateway (or a listener of one) the route attaches to: Gateway API's ParentReference."""

    name: str = Field(min_length=1, max_length=253, description="Name of the parent (a Gateway).")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Namespace of the parent; absent: the Chute's (another needs the Gateway to allow it).",
    )
    section_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="A listener of the Gateway, by name; absent: every listener that accepts the route.",
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="A listener of the Gateway, by port.")
    group: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^$|" + DNS_SUBDOMAIN,
        description="API group of the parent; absent: gateway.networking.k8s.io.",
    )
    kind: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
        description="Kind of the parent; absent: Gateway.",
    )


HTTP_ROUTE = "spec.expose.httpRoute"


class HttpRoute(ApiModel):
    """A Gateway API HTTPRoute (gateway.networking.k8s.io/v1) to the Chute's serving port."""

    parent_refs: list[ParentRef] = Field(
        min_length=1,
        max_length=32,
        description="The Gateways the route attaches to (Gateway API ParentReference: name, namespace, "
        "sectionName, port, group, kind).",
    )
    hostnames: list[Hostname] = Field(
        default_factory=list,
        max_length=16,
        description="Host names the route answers, lowercase DNS names, optionally '*.'-prefixed; empty: "
        "every host of the Gateway's listeners. The first without a wildcard is status.url's host.",
    )
    path: str | None = Field(
        default=None,
        max_length=256,
        description="Path prefix the route matches, e.g. /qwen; absent: every path ('/').",
    )
    rewrite_prefix: str | None = Field(
        default=None,
        max_length=256,
        description="Replaces the matched path prefix before the request reaches the Chute (URLRewrite "
        "ReplacePrefixMatch), e.g. '/' so that /qwen/v1/models arrives as /v1/models. Needs path.",
    )
    match_cords: bool = Field(
        default=False,
        description="Match only the Chute's cords (its own, or its template's), one match per cord "
        "(Exact, or PathPrefix for a cord ending in '*', with its method), instead of a path prefix. "
        "Not with path or rewritePrefix.",
    )
    scheme: Literal["http", "https"] = Field(
        default="https",
        description="Scheme of status.url (the Gateway's listener decides it; the route cannot tell): "
        "https, or http for a plain-HTTP listener.",
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        path_rule(HTTP_ROUTE, "path", "path"),
        path_rule(HTTP_ROUTE, "rewritePrefix", "rewrite_prefix"),
        Rule(
            cel="!has(self.rewritePrefix) || has(self.path)",
            message=f"{HTTP_ROUTE}.rewritePrefix needs {HTTP_ROUTE}.path (the prefix it replaces)",
            field_path=".rewritePrefix",
            check=lambda m: m.rewrite_prefix is None or m.path is not None,
        ),
        Rule(
            cel="!self.matchCords || (!has(self.path) && !has(self.rewritePrefix))",
            message=f"{HTTP_ROUTE}.matchCords matches the cords' own paths: it takes no path or "
            "rewritePrefix",
            field_path=".matchCords",
            check=lambda m: not m.match_cords or (m.path is None and m.rewrite_prefix is None),
        ),
        Rule(
            cel=f"!has(self.hostnames) || self.hostnames.all(h, h.matches(r'{HOSTNAME_PATTERN}'))",
            message=f"{HTTP_ROUTE}.hostnames must be lowercase DNS names (letters, digits, '-' and '.'), "
            "optionally starting with '*.'",
            field_path=".hostnames",
            check=lambda m: all(hostname_ok(h) for h in m.hostnames),
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> HttpRoute:
        enforce(self, self.RULES)
        _distinct_parents(self.parent_refs)
        return self


def _distinct_parents(refs: list[ParentRef]) -> None:
    """The Gateway API's rule, checked here so that the field is named (its CRD refuses the route):
    references to one parent are distinct, and each sets a sectionName or port when there are several."""
    seen: dict[tuple[str | None, str | None, str | None, str], list[ParentRef]] = {}
    for ref in refs:
        seen.setdefault((ref.group or None, ref.kind or None, ref.namespace, ref.name), []).append(ref)
    for (_, _, _, name), same in seen.items():
        listeners = [(ref.section_name or None, ref.port) for ref in same]
        if len(same) > 1 and (len(set(listeners)) < len(listeners) or (None, None) in listeners):
            raise ValueError(
                f"{HTTP_ROUTE}.parentRefs: the references to parent {name!r} must each name a different "
                "listener (sectionName or port)"
            )


INGRESS = "spec.expose.ingress"


class Ingress(ApiModel):
    """A networking.k8s.io/v1 Ingress to the Chute's Service (its serving port, by name)."""

    class_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="The IngressClass; absent: the cluster's default class.",
    )
    host: Hostname | None = Field(
        default=None,
        description="Host name the Ingress answers (lowercase DNS name, optionally '*.'-prefixed); "
        "absent: every host. status.url's host.",
    )
    path: str = Field(default="/", max_length=256, description="Path prefix (pathType Prefix).")
    tls_secret_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret with the TLS certificate for host: TLS is terminated with it and status.url "
        "is https.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the Ingress (for its controller)."
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        path_rule(INGRESS, "path", "path"),
        Rule(
            cel=f"!has(self.host) || self.host.matches(r'{HOSTNAME_PATTERN}')",
            message=f"{INGRESS}.host must be a lowercase DNS name (letters, digits, '-' and '.'), "
            "optionally starting with '*.'",
            field_path=".host",
            check=lambda m: m.host is None or hostname_ok(m.host),
        ),
        Rule(
            cel=f"!has(self.host) || !self.host.matches(r'{IP_ADDRESS}')",
            message=f"{INGRESS}.host must be a host name, not an IP address (the Ingress API refuses one)",
            field_path=".host",
            check=lambda m: m.host is None or re.match(IP_ADDRESS, m.host) is None,
        ),
    )
    model_config = ConfigDict(json_schema_extra=rules_schema(*RULES))

    @model_validator(mode="after")
    def _rules(self) -> Ingress:
        enforce(self, self.RULES)
        _annotations_ok(self.annotations)
        return self


def _annotations_ok(annotations: dict[str, str]) -> None:
    """Annotation keys are qualified names, and none is a controller's raw-configuration snippet.
    Checked by the operator (the Chute is Invalid, the field named): a CEL rule over a map's keys of
    unbounded length would exceed the API server's cost budget."""
    for key in annotations:
        problem = key_problem(key)
        if problem:
            raise ValueError(f"{INGRESS}.annotations: {problem}")
        if SNIPPET_ANNOTATION.search(key):
            raise ValueError(
                f"{INGRESS}.annotations: {key!r} would write raw configuration into the ingress "
                "controller, for every host it serves; a Chute may not set snippet annotations"
            )


class EndpointPicker(ApiModel):
    """The Service of an inference gateway's endpoint picker, in the Chute's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the picker's Service.")
    port: int = Field(ge=1, le=65535, description="Port of the picker's Service (its gRPC ext-proc port).")
    failure_mode: Literal["FailOpen", "FailClose"] | None = Field(
        default=None,
        description="What the gateway does when the picker does not answer: FailClose (refuse the "
        "request) or FailOpen (send it anyway); absent: FailClose.",
    )


class InferencePool(ApiModel):
    """An InferencePool (inference.networking.k8s.io/v1) of the Chute's pods, for inference gateways."""

    endpoint_picker: EndpointPicker | None = Field(
        default=None, description="The endpoint picker's Service (endpointPickerRef); absent: none."
    )


class Expose(ApiModel):
    """How the Chute is reached from outside its namespace. Each object is created only where the
    cluster serves its API (the Exposed condition says which is missing), owned by the Chute and
    deleted when its field is removed; they reach the serving port only, never metrics or admin."""

    http_route: HttpRoute | None = Field(
        default=None,
        description="A Gateway API HTTPRoute to the Chute's Service (or to its InferencePool when "
        "inferencePool is set too).",
    )
    ingress: Ingress | None = Field(default=None, description="An Ingress to the Chute's Service.")
    inference_pool: InferencePool | None = Field(
        default=None,
        description="An InferencePool selecting the Chute's pods (label chutes.ai/chute) on the "
        "sidecar's serving port, for an inference gateway.",
    )
