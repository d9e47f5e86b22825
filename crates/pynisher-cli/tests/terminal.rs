//! pynisher on a terminal (a pseudo-terminal made by `script`): the live status line, a program
//! reading the terminal, and Ctrl-C typed on it.

mod common;
use pynisher_testkit::{lacking_programs, Trials};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `shell_command` under `script` (so it has a terminal), typing each step's bytes after its
/// delay; returns everything the terminal showed and how long it took.
fn on_terminal_typing(shell_command: &str, steps: &[(Duration, &[u8])]) -> (String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("script")
        .args(["-qfec", shell_command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for (delay, keys) in steps {
        std::thread::sleep(*delay);
        // The session may already be over (a failing test); the output tells.
        let _ = stdin.write_all(keys).and_then(|()| stdin.flush());
    }
    // Keep the terminal open until the command ends: script ends the session at end of input.
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        start.elapsed(),
    )
}

/// [`on_terminal_typing`] with one step.
fn on_terminal(shell_command: &str, delay: Duration, keys: &[u8]) -> (String, Duration) {
    on_terminal_typing(shell_command, &[(delay, keys)])
}

const PYNISHER: &str = env!("CARGO_BIN_EXE_pynisher");

fn the_live_status_line_is_drawn_on_a_terminal_with_verbose() {
    let command = format!("{PYNISHER} --verbose --wall-time 10s -- sleep 1.2");
    let (text, _) = on_terminal(&command, Duration::ZERO, b"");
    let redraws = text.matches("\r\x1b[Kpynisher: elapsed").count();
    assert!(redraws >= 2, "expected a redrawn line: {text:?}");
    assert!(
        redraws <= 8,
        "redrawn more than 4 times a second: {redraws}"
    );
    assert!(text.contains("/ 10.00s"), "{text:?}");
    assert!(
        text.contains("pynisher: completed, exit code 0"),
        "{text:?}"
    );
}

fn a_program_can_read_the_terminal() {
    // Without handing over the terminal, `head` would be stopped by SIGTTIN until the limit.
    let command = format!("{PYNISHER} --wall-time 10s -- head -n 1; echo shell-saw=$?");
    let (text, took) = on_terminal(&command, Duration::from_millis(500), b"typed line\n");
    // The terminal echoes the line once, and `head` prints it once more.
    assert_eq!(text.matches("typed line").count(), 2, "{text:?}");
    assert!(text.contains("shell-saw=0"), "{text:?}");
    assert!(took < Duration::from_secs(5), "{took:?}: {text:?}");
}

fn ctrl_c_on_the_terminal_ends_the_program_and_pynisher_like_the_program_alone() {
    let command = format!("{PYNISHER} --wall-time 10s -- sleep 10; echo shell-saw=$?");
    let (text, took) = on_terminal(&command, Duration::from_millis(500), b"\x03");
    assert!(text.contains("killed by SIGINT"), "{text:?}");
    assert!(text.contains("shell-saw=130"), "{text:?}");
    assert!(took < Duration::from_secs(5), "{took:?}: {text:?}");
}

fn ctrl_z_without_job_control_leaves_the_program_running() {
    // `script` runs a non-interactive shell: nobody could continue a stopped pynisher, so the
    // kernel discards its SIGTSTP and pynisher continues the program at once.
    let command =
        format!("{PYNISHER} --wall-time 10s -- sh -c 'sleep 1; echo finished'; echo shell-saw=$?");
    let (text, took) = on_terminal(&command, Duration::from_millis(400), b"\x1a");
    assert!(text.contains("finished"), "{text:?}");
    assert!(text.contains("shell-saw=0"), "{text:?}");
    assert!(
        took < Duration::from_secs(5),
        "the program stayed stopped: {took:?}"
    );
}

fn ctrl_z_in_an_interactive_shell_stops_the_job_and_fg_resumes_it() {
    let line = format!("{PYNISHER} --wall-time 20s -- sh -c 'sleep 1.5; echo fin''ished'\n");
    let ms = Duration::from_millis;
    let (text, took) = on_terminal_typing(
        "bash --norc --noprofile -i",
        &[
            (ms(500), line.as_bytes()),
            (ms(700), b"\x1a"),
            (ms(500), b"echo jobs=$(jobs | grep -c Stopped)\n"),
            (ms(300), b"fg\n"),
            (ms(2500), b"echo status=$?\n"),
            (ms(300), b"exit\n"),
        ],
    );
    assert!(
        text.contains("jobs=1"),
        "pynisher was not shown stopped: {text:?}"
    );
    assert!(text.contains("finished"), "{text:?}");
    assert!(text.contains("status=0"), "{text:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}

fn main() {
    let script = lacking_programs(&["script"]);
    let script_and_bash = lacking_programs(&["script", "bash"]);
    Trials::default()
        .needs(
            script.clone(),
            "the_live_status_line_is_drawn_on_a_terminal_with_verbose",
            the_live_status_line_is_drawn_on_a_terminal_with_verbose,
        )
        .needs(
            script.clone(),
            "a_program_can_read_the_terminal",
            a_program_can_read_the_terminal,
        )
        .needs(
            script.clone(),
            "ctrl_c_on_the_terminal_ends_the_program_and_pynisher_like_the_program_alone",
            ctrl_c_on_the_terminal_ends_the_program_and_pynisher_like_the_program_alone,
        )
        .needs(
            script.clone(),
            "ctrl_z_without_job_control_leaves_the_program_running",
            ctrl_z_without_job_control_leaves_the_program_running,
        )
        .needs(
            script_and_bash.clone(),
            "ctrl_z_in_an_interactive_shell_stops_the_job_and_fg_resumes_it",
            ctrl_z_in_an_interactive_shell_stops_the_job_and_fg_resumes_it,
        )
        .run()
}
