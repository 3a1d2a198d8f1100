//! perl-only pass-through: through the gateway a client sees exactly what it
//! would see talking to pveproxy directly.

use bytes::Bytes;
use http::HeaderMap;
use pve_migration_tests::{Resp, Rig, TOKEN, request};

/// Headers that legitimately differ between two answers (time) or are hop-by-hop.
fn comparable(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<_> = h
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "expires" | "connection" | "keep-alive"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    v.sort();
    v
}

fn assert_same(direct: &Resp, via: &Resp) {
    assert_eq!(direct.status, via.status);
    assert_eq!(direct.reason(), via.reason(), "reason phrase");
    assert_eq!(
        comparable(&direct.headers),
        comparable(&via.headers),
        "headers"
    );
    assert_eq!(direct.body, via.body, "body bytes");
}

#[tokio::test]
async fn answers_are_identical_direct_and_through_the_gateway() {
    let rig = Rig::start().await;
    let c = &rig.client;
    let (cookie, csrf) = c.login(rig.perl_addr()).await;

    // (method, path, headers, body): success, API errors with reason phrases,
    // unknown methods, unauthenticated and CSRF-less writes.
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, &str, Vec<(&str, &str)>, &str)> = vec![
        ("GET", "/api2/json/version", vec![("cookie", &cookie)], ""),
        (
            "GET",
            "/api2/extjs/version",
            vec![("authorization", TOKEN)],
            "",
        ),
        ("GET", "/api2/json/version", vec![], ""),
        (
            "GET",
            "/api2/json/version",
            vec![("authorization", "PVEAPIToken=root@pam!ci=wrong")],
            "",
        ),
        (
            "POST",
            "/api2/json/nodes/pve1/storage/local/upload",
            vec![("cookie", &cookie)],
            "x",
        ),
        (
            "POST",
            "/api2/json/nodes/pve1/storage/local/upload",
            vec![("cookie", &cookie), ("csrfpreventiontoken", &csrf)],
            "iso-bytes",
        ),
        (
            "PUT",
            "/api2/json/cluster/options",
            vec![("authorization", TOKEN)],
            "keyboard=de",
        ),
        (
            "DELETE",
            "/api2/json/nodes/pve1/foo",
            vec![("authorization", TOKEN)],
            "",
        ),
        (
            "GET",
            "/api2/json/nodes/pve2/status",
            vec![("authorization", TOKEN)],
            "",
        ),
        ("GET", "/", vec![], ""),
    ];
    for (method, path, headers, body) in cases {
        let mut headers = headers.clone();
        if !body.is_empty() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let direct = c
            .send(
                rig.perl_addr(),
                request(method, path, &headers, Bytes::from(body)),
            )
            .await;
        let via = c
            .send(rig.gw(), request(method, path, &headers, Bytes::from(body)))
            .await;
        assert_same(&direct, &via);
        eprintln!("{method} {path}: {} {}", via.status, via.reason());
    }
}

#[tokio::test]
async fn error_reason_phrases_survive_the_hop() {
    let rig = Rig::start().await;
    let resp = rig.client.get(rig.gw(), "/api2/json/version", &[]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.reason(), "No ticket");
    let resp = rig
        .client
        .get(
            rig.gw(),
            "/api2/json/nodes/pve1/nonexistent",
            &[("authorization", TOKEN)],
        )
        .await;
    assert_eq!(resp.status, 501);
    assert_eq!(
        resp.reason(),
        "Method 'GET /nodes/pve1/nonexistent' not implemented"
    );
}

#[tokio::test]
async fn ticket_login_with_csrf_and_api_tokens_work_through_the_gateway() {
    let rig = Rig::start().await;
    let c = &rig.client;
    let (cookie, csrf) = c.login(rig.gw()).await;
    let resp = c
        .get(rig.gw(), "/api2/json/version", &[("cookie", &cookie)])
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["data"]["release"], "8.2");

    let gw = rig.gw();
    let upload = |h: &[(&str, &str)]| {
        c.send(
            gw,
            request(
                "POST",
                "/api2/json/nodes/pve1/storage/local/upload",
                h,
                Bytes::from_static(b"abc"),
            ),
        )
    };
    let without_csrf = upload(&[("cookie", &cookie)]).await;
    assert_eq!(without_csrf.status, 401);
    assert_eq!(
        without_csrf.reason(),
        "Permission denied - invalid csrf token"
    );
    let with_csrf = upload(&[("cookie", &cookie), ("csrfpreventiontoken", &csrf)]).await;
    assert_eq!(with_csrf.status, 200, "{}", with_csrf.reason());
    let with_token = upload(&[("authorization", TOKEN)]).await;
    assert_eq!(with_token.status, 200);
    assert_eq!(with_token.json()["data"]["bytes"], 3);
}

#[tokio::test]
async fn forwarding_headers_host_and_dry_run_marker() {
    let rig = Rig::start().await;
    let resp = rig
        .client
        .get(
            rig.gw(),
            "/api2/json/version?x=1",
            &[
                ("authorization", TOKEN),
                ("x-forwarded-for", "203.0.113.66"),
                ("x-pve-dry-run", "1"),
                ("connection", "x-hop"),
                ("x-hop", "secret-hop"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);
    let seen = rig.perl().stats().recent();
    let last = seen.last().expect("request reached pveproxy");
    assert_eq!(last.path, "/api2/json/version?x=1");
    assert_eq!(last.host.as_deref(), Some("localhost"), "Host is kept");
    assert_eq!(
        last.forwarded_for.as_deref(),
        Some("127.0.0.1"),
        "client-supplied XFF is replaced"
    );
    assert_eq!(last.forwarded_proto.as_deref(), Some("https"));
    assert_eq!(
        last.dry_run, None,
        "a client can never set the dry-run marker"
    );
}

/// Every network API method, proxmoxer-style (form bodies, ticket + CSRF):
/// the same write sent direct and through the gateway (reverting in between)
/// gets the same status, reason, headers and bytes.
#[tokio::test]
async fn network_api_methods_are_identical_direct_and_through_the_gateway() {
    let rig = Rig::start().await;
    let c = &rig.client;
    let (cookie, csrf) = c.login(rig.gw()).await;
    let auth = [
        ("cookie", cookie.as_str()),
        ("csrfpreventiontoken", csrf.as_str()),
    ];
    let form = |body: &'static str| (Bytes::from_static(body.as_bytes()), true);
    let none = || (Bytes::new(), false);
    let net = "/api2/json/nodes/pve1/network";
    let cases: Vec<(&str, String, (Bytes, bool))> = vec![
        ("GET", net.to_owned(), none()),
        ("GET", format!("{net}?type=any_bridge"), none()),
        ("GET", format!("{net}/vmbr0"), none()),
        ("GET", format!("{net}/vmbr9"), none()),
        (
            "GET",
            "/api2/extjs/nodes/pve1/network/vmbr9".to_owned(),
            none(),
        ),
        (
            "POST",
            net.to_owned(),
            form("iface=vmbr9&type=bridge&autostart=1&cidr=192.0.2.9/24"),
        ),
        (
            "POST",
            net.to_owned(),
            form("iface=vmbr8&type=bridge&bridge_ports=eno2"),
        ),
        ("POST", net.to_owned(), form("iface=vmbr0&type=bridge")),
        ("POST", net.to_owned(), form("iface=9bad&type=bridge")),
        ("POST", net.to_owned(), form("type=bridge")),
        (
            "PUT",
            format!("{net}/vmbr0.50"),
            form("type=vlan&cidr=10.50.0.3/24&comments=moved"),
        ),
        ("PUT", format!("{net}/vmbr0"), form("delete=gateway")),
        ("DELETE", format!("{net}/vmbr0.50"), none()),
        ("DELETE", format!("{net}/nope0"), none()),
        ("PATCH", net.to_owned(), none()),
    ];
    for (method, path, (body, is_form)) in cases {
        let mut headers = auth.to_vec();
        if is_form {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let direct = c
            .send(
                rig.perl_addr(),
                request(method, &path, &headers, body.clone()),
            )
            .await;
        // Undo a successful write so the gateway's request meets the same state.
        let revert = || c.send(rig.perl_addr(), request("DELETE", net, &auth, Bytes::new()));
        revert().await;
        let via = c
            .send(rig.gw(), request(method, &path, &headers, body))
            .await;
        revert().await;
        assert_same(&direct, &via);
        eprintln!("{method} {path}: {} {}", via.status, via.reason());
    }
}
