//! The `vestibule` command line: `serve` (default), `migrate`, `org create`, `app create`,
//! `app secret rotate`, `keys rotate`, `api-key create`, `invite`, `idp add|list|remove`.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bulk_cli;
use vestibule::config::Settings;
use vestibule::services::Actor;
use vestibule::services::orgs::{self, NewOrg, link_purpose, validate_new_org};
use vestibule::startup::{Application, prepare_database};

#[derive(Parser)]
#[command(name = "vestibule", version, about = "Guest collaboration portal: invite people from outside by email")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, start the web server and the mail worker (the default).
    Serve,
    /// Run migrations only.
    Migrate,
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Invite guests in bulk from a CSV file (Azure's bulk invite template is accepted).
    Invite {
        /// Slug of the organization.
        #[arg(long)]
        org: String,
        /// The CSV file.
        #[arg(long)]
        csv: std::path::PathBuf,
        /// Only check the file and print the preview.
        #[arg(long)]
        dry_run: bool,
        /// Invite as this admin (default: the organization's first admin).
        #[arg(long = "as", value_name = "EMAIL")]
        as_email: Option<String>,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Manage apps that sign people in with OpenID Connect.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage the OpenID Connect signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the identity providers an organization's guests sign in with (federation).
    Idp {
        #[command(subcommand)]
        command: IdpCommand,
    },
}

#[derive(Subcommand)]
enum IdpCommand {
    /// Add an identity provider once its issuer answers discovery; prints the redirect URI to register.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        /// Read the client secret from standard input (required: secrets never go on the command line).
        #[arg(long, required = true)]
        client_secret_stdin: bool,
        /// The email domains it serves, separated by commas.
        #[arg(long)]
        domains: String,
        /// How the issuer is checked: generic, entra (multi-tenant Microsoft Entra ID) or google.
        #[arg(long, default_value = "generic", value_parser = ["generic", "entra", "google"])]
        kind: String,
        /// Scopes asked besides openid, email and profile (space-separated).
        #[arg(long, default_value = "")]
        extra_scopes: String,
        /// Take the provider's email claim as verified even without email_verified.
        #[arg(long)]
        trust_email: bool,
    },
    /// List an organization's identity providers.
    List {
        #[arg(long)]
        org: String,
    },
    /// Remove an identity provider by name.
    Remove {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app with sign-in with OpenID Connect on; prints its client_id (and client_secret, once).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        /// An exact redirect URI (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uri: Vec<String>,
        /// A public client (PKCE, no secret).
        #[arg(long)]
        public: bool,
    },
    /// Manage an app's client secret.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Replace the client secret and print the new one (shown only once).
    Rotate {
        #[arg(long)]
        org: String,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key; old public keys stay published until the tokens they signed expire.
    Rotate,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key for an organization and print it (shown only once).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        expires_days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization and its first admin.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: Option<String>,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_name: Option<String>,
        /// Read the admin's password from standard input instead of printing a link to choose it.
        #[arg(long)]
        admin_password_stdin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vestibule: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log))
        .with_target(false)
        .init();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Migrate => prepare_database(&settings).map(|_| println!("migrations are up to date")),
        Command::Org { command: OrgCommand::Create { name, slug, admin_email, admin_name, admin_password_stdin } } => {
            create_org(
                &settings,
                NewOrg {
                    name,
                    slug: slug.unwrap_or_default(),
                    admin_email,
                    admin_name: admin_name.unwrap_or_default(),
                },
                admin_password_stdin,
            )
        }
        Command::ApiKey { command: ApiKeyCommand::Create { org, name, expires_days } } => prepare_database(&settings)
            .and_then(|pool| {
                let key = vestibule::services::api_keys::create_for_cli(&mut *pool.get()?, &org, &name, expires_days)?;
                println!("{key}");
                Ok(())
            }),
        Command::App { command: AppCommand::Create { org, name, url, redirect_uri, public } } => {
            prepare_database(&settings).and_then(|pool| {
                let created = vestibule::services::oidc::clients::create_for_cli(
                    &mut *pool.get()?,
                    &org,
                    &name,
                    &url,
                    &redirect_uri,
                    public,
                )?;
                println!("client_id: {}", created.client_id);
                if let Some(secret) = &created.secret {
                    println!("client_secret: {}", secret.expose());
                }
                Ok(())
            })
        }
        Command::App { command: AppCommand::Secret { command: SecretCommand::Rotate { org, client_id } } } => {
            prepare_database(&settings).and_then(|pool| {
                let secret = vestibule::services::oidc::clients::rotate_for_cli(&mut *pool.get()?, &org, &client_id)?;
                println!("client_secret: {}", secret.expose());
                Ok(())
            })
        }
        Command::Keys { command: KeysCommand::Rotate } => prepare_database(&settings).and_then(|pool| {
            let kid = vestibule::services::oidc::keys::rotate(&mut *pool.get()?)?;
            println!("new signing key: {kid} (running servers use it within a minute)");
            Ok(())
        }),
        Command::Idp { command } => idp(&settings, command),
        Command::Invite { org, csv, dry_run, as_email } => {
            bulk_cli::invite(&settings, &org, &csv, dry_run, as_email.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vestibule: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let public = settings.base_url();
        let app = Application::build(settings)?;
        println!("Vestibule is listening on port {} (public URL {public})", app.port());
        if let Some(link) = &app.setup_link {
            println!("\nFirst run: open this one-time link to create your organization and its admin:\n\n    {link}\n");
        }
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn idp(settings: &Settings, command: IdpCommand) -> anyhow::Result<()> {
    use vestibule::services::idp::{self, providers};
    match command {
        IdpCommand::Add {
            org,
            name,
            issuer,
            client_id,
            client_secret_stdin: _,
            domains,
            kind,
            extra_scopes,
            trust_email,
        } => {
            let mut secret = String::new();
            std::io::stdin().read_to_string(&mut secret)?;
            let input = providers::ProviderInput {
                kind,
                name,
                issuer,
                client_id,
                client_secret: secret.trim_end_matches(['\r', '\n']).to_owned(),
                extra_scopes,
                domains,
                trust_email: trust_email.then(|| "on".to_owned()),
            };
            let pool = prepare_database(settings)?;
            std::fs::create_dir_all(&settings.data_dir)?;
            let key = vestibule::startup::load_or_create_secret(&settings.data_dir)?;
            let fed = idp::Federation::new(&key, &settings.base_url())?;
            let added = actix_web::rt::System::new().block_on(providers::add_for_cli(&pool, &fed, &org, &input))?;
            println!("added identity provider {} ({})", added.name, added.issuer);
            println!("redirect URI to register at the provider: {}", fed.callback_url);
            Ok(())
        }
        IdpCommand::List { org } => {
            let pool = prepare_database(settings)?;
            for line in providers::list_for_cli(&mut *pool.get()?, &org)? {
                println!("{line}");
            }
            Ok(())
        }
        IdpCommand::Remove { org, name } => {
            let pool = prepare_database(settings)?;
            providers::remove_for_cli(&mut *pool.get()?, &org, &name)?;
            println!("removed identity provider {name}");
            Ok(())
        }
    }
}

fn create_org(settings: &Settings, input: NewOrg, password_stdin: bool) -> anyhow::Result<()> {
    let org = validate_new_org(&input).map_err(|errors| {
        let fields: Vec<String> = errors
            .0
            .iter()
            .map(|(f, k)| format!("--{}: {}", f.replace('_', "-"), vestibule::i18n::Lang::En.tr().t(k)))
            .collect();
        anyhow::anyhow!("{}", fields.join("; "))
    })?;
    let password_hash = if password_stdin {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        let password = password.trim_end_matches(['\r', '\n']);
        vestibule::domain::password::check_new_password(password, password, org.admin_email.as_str())
            .map_err(|p| anyhow::anyhow!("password: {}", vestibule::i18n::Lang::En.tr().t(p.message_key())))?;
        Some(vestibule::auth::password::hash_password(password)?)
    } else {
        None
    };
    let pool = prepare_database(settings)?;
    let mut conn = pool.get()?;
    let (org_row, user) =
        orgs::create_org(&mut conn, &org, password_hash.as_deref(), &Actor::default()).map_err(|e| match e {
            vestibule::services::ServiceError::Invalid(errors) => {
                anyhow::anyhow!(
                    "{}",
                    errors
                        .0
                        .iter()
                        .map(|(f, k)| format!("--{f}: {}", vestibule::i18n::Lang::En.tr().t(k)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
            other => anyhow::anyhow!(other),
        })?;
    println!("Created organization {} ({}) with admin {}", org_row.name, org_row.slug, user.email);
    if user.password_hash.is_none() {
        let token =
            orgs::create_link(&mut conn, link_purpose::SET_PASSWORD, Some(&user.id), time::Duration::hours(72))?;
        println!(
            "The admin chooses a password with this one-time link (valid 72 hours):\n\n    {}/password/{}\n",
            settings.base_url(),
            token.expose()
        );
    }
    println!("Admin console: {}/o/{}/admin", settings.base_url(), org_row.slug);
    Ok(())
}
