//! The `axum` feature: every kind of `CommandError` as RFC 9457 problem details, from a real
//! axum server on 127.0.0.1, read by a raw HTTP/1.1 client; no personal value sent in a command,
//! and no store error text, comes back in any response.

#![cfg(feature = "axum")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use eventsourcery::http::{PROBLEM_JSON, PublicRejection};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, DomainEvent, Error, MemoryStore,
    PersonalData, PersonalKey, PersonalVault, Repository, SerializableValue, StoreError,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// In the store error a handler passes on: what the client must never see.
const STORE_SECRET: &str = "/var/lib/clinic/events.db: SELECT * FROM events";

#[derive(PersonalData, Clone)]
struct Name(String);

#[derive(SerializableValue, Clone, Debug)]
struct WardId(Uuid);

/// Every case is one command, with the name that the client sent.
#[derive(Command, Clone)]
struct Admit {
    patient: PersonalKey,
    #[personal(subject = patient)]
    name: Name,
    case: Case,
}

#[derive(SerializableValue, Clone, Copy, Debug)]
enum Case {
    Admitted,
    RejectedWithName,
    RejectedPublicly,
    RejectedForNow,
    Conflict,
    Invalid,
    StoreFailed,
}

/// A value whose encoding fails, with a personal value in the serde error.
#[derive(Debug)]
struct Unencodable(String);

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(format!(
            "cannot encode {}",
            self.0
        )))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[derive(DomainEvent, Debug)]
struct Noted {
    note: Unencodable,
}

#[derive(DomainEvent, Debug)]
struct Opened;

#[derive(Aggregate, Default)]
#[aggregate(id = WardId, events(Noted, Opened))]
struct Ward;

impl Apply<Noted> for Ward {
    fn apply(&mut self, _: &Noted) {}
}

impl Apply<Opened> for Ward {
    fn apply(&mut self, _: &Opened) {}
}

#[eventsourcery::handler]
async fn admit(command: Admit, wards: Repository<Ward>) -> Result<(), Error> {
    match command.case {
        Case::Admitted => {
            let mut ward = wards.load(&WardId(Uuid::now_v7())).await?;
            ward.raise(Opened);
            wards.save(&mut ward).await?;
            Ok(())
        }
        // A handler's own message, with the personal value in it: never shown.
        Case::RejectedWithName => Err(Error::rejected(format!(
            "{} is already admitted",
            command.name.0
        ))),
        Case::RejectedPublicly => Err(PublicRejection::new("the ward has no free bed").into()),
        Case::RejectedForNow => Err(Error::domain(PublicRejection::conflict(
            "the ward is closed for cleaning",
        ))),
        Case::Conflict => Err(StoreError::Conflict {
            stream: eventsourcery::value::StreamId::new("ward-1"),
            expected: 0,
            actual: 1,
        }
        .into()),
        Case::Invalid => {
            let mut ward = wards.load(&WardId(Uuid::now_v7())).await?;
            ward.raise(Noted {
                note: Unencodable(command.name.0.clone()),
            });
            wards.save(&mut ward).await?;
            Ok(())
        }
        Case::StoreFailed => Err(StoreError::Corrupt {
            table: "events",
            location: STORE_SECRET.to_owned(),
            reason: command.name.0.clone(),
        }
        .into()),
    }
}

/// A command with no handler: the program is set up wrong.
#[derive(Command, Clone)]
struct Discharge;

struct App {
    bus: CommandBus,
    erased: PersonalKey,
}

async fn execute(
    app: &App,
    case: Case,
    subject: PersonalKey,
    name: String,
) -> Result<StatusCode, CommandError> {
    app.bus
        .execute(Admit {
            patient: subject,
            name: Name(name),
            case,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn route(case: Case) -> axum::routing::MethodRouter<Arc<App>> {
    post(
        move |State(app): State<Arc<App>>, name: String| async move {
            execute(&app, case, PersonalKey::issue(), name).await
        },
    )
}

async fn start() -> SocketAddr {
    let vault = Arc::new(PersonalVault::in_memory().unwrap());
    let bus = CommandBus::builder(MemoryStore::new())
        .personal_data(vault.clone())
        .max_attempts(2)
        .without_handler::<Discharge>()
        .build()
        .unwrap();
    let erased = PersonalKey::issue();
    vault.erase(erased, "request").await.unwrap();
    let app = Arc::new(App { bus, erased });

    let router = Router::new()
        .route("/admitted", route(Case::Admitted))
        .route("/rejected-with-name", route(Case::RejectedWithName))
        .route("/rejected-publicly", route(Case::RejectedPublicly))
        .route("/rejected-for-now", route(Case::RejectedForNow))
        .route("/conflict", route(Case::Conflict))
        .route("/invalid", route(Case::Invalid))
        .route("/store-failed", route(Case::StoreFailed))
        .route(
            "/erased",
            post(|State(app): State<Arc<App>>, name: String| async move {
                let subject = app.erased;
                execute(&app, Case::Admitted, subject, name).await
            }),
        )
        .route(
            "/discharge",
            post(|State(app): State<Arc<App>>| async move {
                app.bus
                    .execute(Discharge)
                    .await
                    .map(|_| StatusCode::NO_CONTENT)
            }),
        )
        .with_state(app);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on its own connection, read until the server closes it.
async fn send(addr: SocketAddr, path: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect::<HashMap<_, _>>();
    assert!(
        !headers.contains_key("transfer-encoding"),
        "a sized body: {headers:?}"
    );
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

const NAME: &str = "Ann Secretname";

/// Sends `NAME` to `path`, checks the problem response and gives its JSON body.
async fn problem(addr: SocketAddr, path: &str, status: u16, kind: &str) -> Value {
    let reply = send(addr, path, NAME).await;
    assert_eq!(reply.status, status, "{path}: {}", reply.body);
    assert_eq!(reply.headers["content-type"], PROBLEM_JSON, "{path}");
    assert!(!reply.body.contains("Secretname"), "{path}: {}", reply.body);
    assert!(!reply.body.contains("/var/lib"), "{path}: {}", reply.body);
    assert!(!reply.body.contains("SELECT"), "{path}: {}", reply.body);
    let json: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(json["status"], status, "{path}");
    assert_eq!(json["kind"], kind, "{path}");
    let anchor = kind.replace('_', "-");
    assert_eq!(
        json["type"],
        format!("https://docs.rs/eventsourcery/latest/eventsourcery/http/#{anchor}"),
        "{path}"
    );
    assert!(
        json["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{path}"
    );
    assert!(
        json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{path}"
    );
    let members: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(members.len(), 5, "{path}: {members:?}");
    json
}

#[tokio::test]
async fn every_kind_of_command_error_is_a_problem_response() {
    let addr = start().await;

    let ok = send(addr, "/admitted", NAME).await;
    assert_eq!(ok.status, 204, "{}", ok.body);

    let rejected = problem(addr, "/rejected-with-name", 422, "rejected").await;
    assert_eq!(
        rejected,
        json!({
            "type": "https://docs.rs/eventsourcery/latest/eventsourcery/http/#rejected",
            "title": "Command rejected",
            "status": 422,
            "detail": "The command was rejected by a rule of the domain.",
            "kind": "rejected",
        })
    );

    let public = problem(addr, "/rejected-publicly", 422, "rejected").await;
    assert_eq!(public["detail"], "the ward has no free bed");
    let for_now = problem(addr, "/rejected-for-now", 409, "rejected").await;
    assert_eq!(for_now["detail"], "the ward is closed for cleaning");

    let conflict = problem(addr, "/conflict", 409, "conflict").await;
    assert_eq!(conflict["title"], "Concurrent update");
    assert!(
        conflict["detail"].as_str().unwrap().contains("2 attempts"),
        "{conflict}"
    );

    let invalid = problem(addr, "/invalid", 400, "invalid").await;
    assert_eq!(invalid["title"], "Invalid command");

    let erased = problem(addr, "/erased", 410, "subject_erased").await;
    assert_eq!(erased["title"], "Data subject erased");

    let unavailable = problem(addr, "/store-failed", 503, "unavailable").await;
    assert_eq!(
        unavailable["detail"],
        "A store the service depends on failed or could not be reached; try again later."
    );

    let misconfigured = problem(addr, "/discharge", 500, "misconfigured").await;
    assert_eq!(misconfigured["title"], "Internal server error");
}
