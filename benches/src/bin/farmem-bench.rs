//! `farmem-bench <scenario> [options]`: runs one scenario side by side with its baselines and
//! prints a table, then one line `RESULT {json}`. `farmem-bench --list` names the scenarios.

use std::process::ExitCode;

use farmem_benches::scenarios::ALL;

fn usage() -> String {
    let mut s = String::from(
        "usage: farmem-bench <scenario> [options]   (or: farmem-bench --list)\n\nscenarios:\n",
    );
    for sc in ALL {
        s.push_str(&format!("  {:<12} {}\n", sc.name, sc.about));
    }
    s.push_str("\n`farmem-bench <scenario> --help` lists a scenario's options.\n");
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    if name == "--list" || name == "--help" || name == "-h" {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some(scenario) = ALL.iter().find(|s| s.name == name.as_str()) else {
        eprintln!("farmem-bench: unknown scenario {name:?}\n");
        eprint!("{}", usage());
        return ExitCode::from(2);
    };
    match (scenario.run)(&args) {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("farmem-bench {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
