use eventsourcery::Command;

#[derive(Command, Clone)]
struct SendMail {
    to: String,
}

#[eventsourcery::handler]
fn send_mail(cmd: SendMail) {
    let _ = cmd;
}

fn main() {}
