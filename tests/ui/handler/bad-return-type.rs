use eventsourcery::Command;

#[derive(Command, Clone)]
struct SendMail {
    to: String,
}

#[eventsourcery::handler]
async fn send_mail(cmd: SendMail) -> bool {
    !cmd.to.is_empty()
}

fn main() {}
