//! First run: the one-time setup link creates the first organization and its admin.

use diesel::prelude::*;
use reqwest::StatusCode;

use crate::helpers::{PASSWORD, TestApp, location};
use crate::on_both_databases;

async fn setup_link_creates_the_first_org_once(app: TestApp) {
    let link = app.setup_link.clone().expect("a setup link on first run");
    let path = link.trim_start_matches(&app.base).to_owned();
    let token = path.split("token=").nth(1).unwrap().to_owned();
    let b = app.browser();
    let (status, body) = b.get_text(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Create organization"));
    // Errors keep the input.
    let res = b
        .post(
            "/setup",
            &[
                ("token", &token),
                ("name", "Initech"),
                ("slug", ""),
                ("admin_name", "Bill"),
                ("admin_email", "bill@initech.test"),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("value=\"bill@initech.test\""));
    let res = b
        .post(
            "/setup",
            &[
                ("token", &token),
                ("name", "Initech"),
                ("slug", ""),
                ("admin_name", "Bill"),
                ("admin_email", "bill@initech.test"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/o/initech/admin");
    assert_eq!(b.get("/o/initech/admin").await.status(), StatusCode::OK);
    // The link is dead afterwards.
    let (status, _) = app.browser().get_text(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let n: i64 = app.with_conn(|c| vestibule::db::schema::organizations::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);
}

on_both_databases!(setup_link_creates_the_first_org_once);
