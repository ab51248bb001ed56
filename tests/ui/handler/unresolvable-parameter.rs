use eventsourcery::Command;

#[derive(Command, Clone)]
struct SendMail {
    to: String,
}

struct Mailer;

#[eventsourcery::handler]
async fn send_mail(cmd: SendMail, mailer: Mailer) {
    let _ = (cmd, mailer);
}

fn main() {}
