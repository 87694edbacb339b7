import ArgumentParser
import Foundation
import SharedMemory

/// `shm`: see, create, inspect, read, write, resize and remove shared memory of every mechanism, one tool.
@main
struct Shm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm",
        abstract: "One ipcs/ipcrm for every kind of shared memory: System V, POSIX, mapped files.",
        discussion: """
            Regions are named as in the SharedMemory library: sysv:0x1234 (a key), sysv-id:32768 (an id, as \
            ipcs -m shows it), posix:/name (in /dev/shm), file:/path.
            """,
        version: "shm 0.1.0 (SharedMemory, not yet released)",
        subcommands: [List.self, Stat.self, Create.self, Write.self, Read.self, Resize.self, Remove.self,
                      GarbageCollect.self, Inspect.self, Limits.self, Bench.self, CBenchCommand.self, SwiftBenchCommand.self]
    )

    /// Every failure ends here: one line on standard error starting `shm: error:`, and a non-zero exit.
    static func main() {
        let command: ParsableCommand
        do {
            command = try parseAsRoot(Inspect.defaultingWatch(Array(CommandLine.arguments.dropFirst())))
        } catch {
            finish(with: error)
        }
        do {
            var command = command
            try command.run()
        } catch {
            finish(with: error)
        }
    }

    static func finish(with error: any Error) -> Never {
        let code: Int32
        switch error {
        case let error as SharedMemoryError:
            report(error.description)
            code = 1
        default:
            let exit = exitCode(for: error)
            if exit == .success {  // --help, --version
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            let text = message(for: error)
            if !text.isEmpty { report(text) }
            code = exit.rawValue
        }
        Foundation.exit(code)
    }

    /// `shm: error: TEXT` on standard error, on one line.
    static func report(_ text: String) {
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        FileHandle.standardError.write(Data("shm: error: \(line)\n".utf8))
    }
}

/// The region argument every command that works on one region takes.
struct RegionArgument: ParsableArguments {
    @Argument(help: "The region: sysv:KEY, sysv-id:ID, posix:/NAME or file:/PATH.")
    var region: String

    func name() throws -> RegionName {
        do {
            return try RegionName(region)
        } catch {
            throw ValidationError(error.reason)
        }
    }

    mutating func validate() throws { _ = try name() }
}

/// `--json`, for commands with machine-readable output.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON instead of a table.")
    var json = false
}
