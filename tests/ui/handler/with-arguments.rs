use eventsourcery::Command;

#[derive(Command, Clone)]
struct SendMail {
    to: String,
}

#[eventsourcery::handler(command = SendMail)]
async fn send_mail(cmd: SendMail) {
    let _ = cmd;
}

fn main() {}
