# banger exec agent: `vm exec` without an SSH handshake. init.sh runs it as
# `perl /usr/lib/banger/exec-agent.pl <>PORT >&0` on the virtio-serial port
# named banger.exec; the host side is plugins/guest/exec-agent.ts.
#
# Frames, both ways: a header line `T ID N` (T a letter, ID 1-32 of [0-9a-z],
# N the payload's length in bytes), then N payload bytes. Host -> guest frames
# also end with a trailer line `.ID` and are at most 4096 bytes (N <= 4000).
#   host -> guest: a (append to ID's pending command line), s (start it, with
#     this last piece), i (stdin; N = 0 is EOF), k (signal number to ID's
#     process group), p (ping; payload `v`: the pong says this agent's
#     protocol version; `b`: a beat, see $HOST_GONE_S), c (read the clock), I (a restored guest's identity:
#     see identity(); a frames before it carry a long one), h / g (hold / go:
#     stop reading ID's stdout and stderr, so its writes block once their
#     pipes are full, and read them again: the host's reader is behind); a
#     line `sync` where a header is due: nothing.
#   guest -> host: o / e (stdout / stderr chunks), x (exit status: the code,
#     or 128 + signal; for I: 0, all done), r (could not start: a reason; no
#     x follows; for I: the step that failed), p (pong: empty, or the version
#     when asked), c (CLOCK_REALTIME as `SECONDS.NANOSECONDS`).
# Version 3 has h and g; version 2 has c and I; version 1 (no version in its
# pong) had none of them, and an agent on a machine without our syscall
# numbers says 1.
# A malformed header or a trailer that is not `.ID` for the frame's own ID:
# the frame is dropped unexecuted, then everything up to a line `sync`.
#
# A command runs as dropbear 2022.83 runs one for root without a pty, so
# `vm exec` looks the same over either: `SHELL -c CMD`, argv[0] the shell's
# basename, the environment cleared to USER LOGNAME HOME SHELL PATH (and LANG
# when this process has it: dropbear keeps its own), cwd HOME. dropbear's
# SSH_CONNECTION, SSH_CLIENT and SSH_PUBKEYINFO describe a network peer and a
# key, which there are none of here: left out. Unlike dropbear it also gets a
# session of its own (`kill 0` cannot reach this agent) and every signal back
# at its default (perl ignores SIGFPE; init ignores others).
#
# When an exec is over: measured against dropbear 2022.83, `sleep 3 &` and
# `(sleep 2; echo late) &` both end at once (0.12 s, exit 0, "late" never
# arrives): dropbear ends the exec when the command's process exits, not when
# the last holder of its stdout closes it. So does this agent: on the
# command's exit it sends what is already in its stdout/stderr pipes, then x,
# then closes its ends; a background job writing on gets EPIPE, never blocks us.
#
# The port's end (EOF: the host closed it) ends the agent once the commands
# running have ended, as the bash agent on banger.agent ends.
#
# Single-threaded: one select(2) over the port, the commands' stdout/stderr
# and the stdin pipes with data waiting. Writes to commands' stdin never block
# (non-blocking, buffered per ID); writes to the port may (the host drains).
#
# It loads no module: under TCG, POSIX.pm alone costs ~0.45 s of guest CPU
# and strict + warnings ~0.13 s, at every boot, next to ~0.16 s for perl
# itself. The system calls perl lacks (setsid, sigprocmask, close of an fd,
# clock_gettime, clock_settime) go through syscall(2) by this
# perl's machine; on another, POSIX after all (and no c or I: version 1).
# Constants are Linux's generic
# ones. (`npm run lint` compiles this file under strict and warnings; the
# tests run it under them with warnings fatal.)

my $MAX_PAYLOAD = 4000;
my $CHUNK = 65536;
my ($EINTR, $EAGAIN, $WNOHANG, $F_SETFL, $O_NONBLOCK, $SIG_SETMASK) = (4, 11, 1, 4, 04000, 2);
# ELF e_machine => syscall numbers of setsid, rt_sigprocmask, close, clock_gettime, clock_settime
my %SYSCALLS = (62 => [112, 14, 3, 228, 227], 183 => [157, 135, 57, 113, 112]);    # x86_64, aarch64
my $SYS;
if (open my $exe, '<', '/proc/self/exe') {
  my $elf = '';
  sysread $exe, $elf, 20;
  # closed here: a handle opened in an `if` lives to the end of the file, and
  # the fd sweep below would close its fd under perl, whose count of the fd's
  # users would then make the first command's stdin pipe (the same fd number)
  # outlive its close
  close $exe;
  $SYS = $SYSCALLS{unpack 'v', substr($elf, 18, 2)} if length $elf == 20;
}
require POSIX unless $SYS;
sub sys_setsid { $SYS ? syscall($SYS->[0]) : POSIX::setsid() }
sub sys_close { $SYS ? syscall($SYS->[2], $_[0] + 0) : POSIX::close($_[0]) }
sub sys_unblock_all {
  my $none = "\0" x 8;    # a sigset_t, passed by address: syscall wants a writable string
  $SYS ? syscall($SYS->[1], $SIG_SETMASK, $none, 0, 8) : POSIX::sigprocmask($SIG_SETMASK, POSIX::SigSet->new);
}

# What dropbear 2022.83 (Debian's build; `strings /usr/sbin/dropbear`) gives root.
my $ROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

my ($USER, $HOME, $SHELL) = (getpwuid 0)[0, 7, 8];
$USER //= 'root';
$HOME = '/' unless defined $HOME && length $HOME;
$SHELL = '/bin/sh' unless defined $SHELL && length $SHELL;    # dropbear's rule for an empty shell
(my $ARGV0 = $SHELL) =~ s{.*/}{};
my %CHILD_ENV = (USER => $USER, LOGNAME => $USER, HOME => $HOME, SHELL => $SHELL, PATH => $ROOT_PATH);
$CHILD_ENV{LANG} = $ENV{LANG} if defined $ENV{LANG};

# Whatever init left open past 0-2 is closed once here; every fd perl opens
# later is close-on-exec, so a command inherits only its three pipes.
if (opendir my $d, '/proc/self/fd') {
  my @fds = grep { /^\d+$/ && $_ > 2 } readdir $d;
  closedir $d;
  sys_close($_) for @fds;
}
# A command must start with no signal blocked or ignored: the mask is emptied
# here (a child inherits it), ignored dispositions are reset in each child.
sys_unblock_all();
my @RESET_SIGNALS = ((grep { defined $SIG{$_} && $SIG{$_} eq 'IGNORE' } keys %SIG), 'PIPE', 'CHLD');
$SIG{PIPE} = 'IGNORE';    # a command gone: its stdin write fails with EPIPE
my $chld = 0;
$SIG{CHLD} = sub { $chld = 1 };
binmode STDIN;
binmode STDOUT;

my %jobs;       # ID => {id pid in inbuf ineof out err}
my %by_pid;     # pid => job
my %readers;    # fd => [job, frame type, handle]
my %pending;    # ID => command line so far (a frames)
my $rbuf = '';
my $skipping = 0;    # resyncing: dropping input up to a line `sync`
my $midline = 0;     # ... and the input is in the middle of a dropped line
my $port_eof = 0;
my $beats = 0;       # the host beats (see $HOST_GONE_S)

sub put {    # one whole frame to the host
  my ($t, $id, $data) = @_;
  my $f = "$t $id " . length($data) . "\n" . $data;
  my $off = 0;
  while ($off < length $f) {
    my $w = syswrite STDOUT, $f, length($f) - $off, $off;
    if (!defined $w) { next if $! == $EINTR; exit 0 }    # the host is gone
    $off += $w;
  }
}

# Bash's builtins and keywords a quoted word still names (`'cd'` is cd): their
# command lines go to the shell. true and false do what /bin/true and
# /bin/false do, so they need no shell.
my %SHELL_WORD = map { $_ => 1 } qw(
  . : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo
  enable eval exec exit export fc fg getopts hash help history jobs kill let local logout mapfile popd printf pushd
  pwd read readarray readonly return set shift shopt source suspend test times trap type typeset ulimit umask
  unalias unset wait
);

# A command line that is only single-quoted words (as the host's shellJoin
# writes `vm exec box -- CMD ARGS`) is exec'd here as bash would exec it,
# without bash: under TCG a bash start is ~70 ms of guest CPU when warm and
# more in a clone, whose translations start cold. The command gets what bash's
# one-command exec gives it: argv as the words, PWD, SHLVL=0 and `_` (its
# path). Anything else (shell syntax, a builtin, a name not on PATH, a file the
# kernel will not exec, such as a script with no #!) returns, and bash runs it.
sub direct {
  my ($cmd) = @_;
  # only where it stands in for bash: another login shell (an OCI image's wrapper, which sets the image's env
  # and workdir first) is run as it is
  return unless $ARGV0 eq 'bash';
  return unless $cmd =~ /\A(?:'[^']*'|\\')+(?: (?:'[^']*'|\\')+)*\z/;
  # a quoted word may hold spaces: the words are the matches, in order
  my @w = map { my $x = $_; $x =~ s/\\'|'([^']*)'/defined $1 ? $1 : "'"/ge; $x } $cmd =~ /((?:'[^']*'|\\')+)/g;
  return if $SHELL_WORD{$w[0]} || !length $w[0];
  my $path;
  if (index($w[0], '/') >= 0) {
    $path = $w[0];
  } else {
    for my $dir (split /:/, $ENV{PATH}, -1) {
      my $f = (length $dir ? $dir : '.') . "/$w[0]";
      if (-f $f && -x _) { $path = $f; last }
    }
  }
  return unless defined $path;
  my $cwd = readlink '/proc/self/cwd';
  local $ENV{PWD} = $cwd if defined $cwd;
  local $ENV{SHLVL} = '0';
  local $ENV{_} = $path;
  eval { exec { $path } @w };
}

sub start {
  my ($id, $cmd) = @_;
  return put('r', $id, "ID $id is running") if $jobs{$id};
  return put('r', $id, 'the command line holds a NUL byte') if index($cmd, "\0") >= 0;
  my ($in_r, $in_w, $out_r, $out_w, $err_r, $err_w, $st_r, $st_w);
  pipe($in_r, $in_w) && pipe($out_r, $out_w) && pipe($err_r, $err_w) && pipe($st_r, $st_w)
    or return put('r', $id, "pipe: $!");
  my $pid = fork;
  return put('r', $id, "fork: $!") unless defined $pid;
  if ($pid == 0) {
    sys_setsid();
    # reopened, the standard handles keep fds 0-2 (dup2), without close-on-exec
    open STDIN, '<&', $in_r;
    open STDOUT, '>&', $out_w;
    open STDERR, '>&', $err_w;
    $SIG{$_} = 'DEFAULT' for @RESET_SIGNALS;
    # dropbear: a HOME it cannot enter is reported on stderr, and / used
    if (!chdir $HOME) { syswrite STDERR, "Failed chdir '$HOME': $!\n"; chdir '/' }
    %ENV = %CHILD_ENV;
    direct($cmd);
    # (in eval: under fatal warnings, as the tests run it, a failed exec dies)
    eval { exec { $SHELL } $ARGV0, '-c', $cmd };
    syswrite $st_w, "exec $SHELL: $!";
    exit 127;
  }
  close $in_r; close $out_w; close $err_w; close $st_w;
  # The status pipe closes at the child's exec (close-on-exec) or carries why it failed.
  my $why = '';
  1 while !defined sysread($st_r, $why, 512) && $! == $EINTR;
  close $st_r;
  if (length $why) {
    waitpid $pid, 0;
    return put('r', $id, $why);
  }
  fcntl $in_w, $F_SETFL, $O_NONBLOCK;
  my $j = {id => $id, pid => $pid, in => $in_w, inbuf => '', ineof => 0};
  $jobs{$id} = $by_pid{$pid} = $j;
  $readers{fileno $out_r} = [$j, 'o', $out_r];
  $readers{fileno $err_r} = [$j, 'e', $err_r];
}

sub close_in {
  my ($j) = @_;
  close $j->{in} if $j->{in};
  $j->{in} = undef;
  $j->{inbuf} = '';
}

sub feed {    # as much of ID's pending stdin as its pipe takes now
  my ($j) = @_;
  while (length $j->{inbuf}) {
    my $w = syswrite $j->{in}, $j->{inbuf};
    if (!defined $w) {
      return if $! == $EAGAIN || $! == $EINTR;
      return close_in($j);    # EPIPE: nobody reads it any more
    }
    substr($j->{inbuf}, 0, $w, '');
  }
  close_in($j) if $j->{ineof};
}

sub read_output {    # one chunk; false at EOF
  my ($fd) = @_;
  my ($j, $t, $fh) = @{$readers{$fd}};
  my $buf;
  my $n = sysread $fh, $buf, $CHUNK;
  return 1 if !defined $n && $! == $EINTR;
  if ($n) { put($t, $j->{id}, $buf); return 1 }
  close $fh;
  delete $readers{$fd};
  return 0;
}

sub finish {    # the command exited: what it left in its pipes, then x
  my ($j, $code) = @_;
  my @fds = grep { $readers{$_}[0] == $j } keys %readers;
  # A background job may keep writing: read what is there, at most 16 chunks
  # (a pipe holds 64 KiB unless resized), rather than until it stops.
  for my $fd (@fds) {
    for (1 .. 16) {
      my $rin = '';
      vec($rin, $fd, 1) = 1;
      last unless select($rin, undef, undef, 0) > 0 && read_output($fd);
    }
    if ($readers{$fd}) { close $readers{$fd}[2]; delete $readers{$fd} }
  }
  put('x', $j->{id}, $code);
  close_in($j);
  delete $jobs{$j->{id}};
  delete $by_pid{$j->{pid}};
}

sub reap {
  $chld = 0;
  while ((my $pid = waitpid -1, $WNOHANG) > 0) {
    my $j = $by_pid{$pid} or next;
    finish($j, $? & 127 ? 128 + ($? & 127) : $? >> 8);
  }
}

# --- a restored guest's identity (I) --------------------------------------------
# A restored guest runs on from a snapshot's memory: its clock stands where
# the snapshot was taken and its kernel RNG state is the snapshot's; a clone
# also has its parent's hostname and keys. The payload: lines `FIELD VALUE`,
# each optional, applied in this order (the clock first: it was measured
# just before), values in hex but the clock's:
#   clock_offset_ns  a signed decimal: CLOCK_REALTIME moves by it
#   entropy          host randomness, mixed into /dev/urandom, then the CRNG
#                    reseeds from it now (RNDRESEEDCRNG; no vmgenid here)
#   hostname         the kernel's and /etc/hostname
#   authorized_key   root's authorized_keys: the parent's key stops working
#   host_key         dropbear's host key file (through init's symlink)
# What the shell's clone-identity.sh does, in this process: under TCG every
# program a clone starts costs 50-350 ms of guest CPU. A host key is
# replaced only under a dropbear started with -R (it reads the file at each
# connection), checked before anything is applied: without it the host goes
# the shell's way, which starts a new dropbear. Returns '' when all went, or
# what failed.
my %IDENTITY_FIELD = (clock_offset_ns => qr/\A-?[0-9]{1,19}\z/, map { $_ => qr/\A(?:[0-9a-f]{2})+\z/ } qw(entropy hostname authorized_key host_key));

sub identity {
  my ($payload) = @_;
  my %v;
  for my $line (split /\n/, $payload) {
    my ($k, $x) = split / /, $line, 2;
    return "identity: a malformed line" unless defined $x && $IDENTITY_FIELD{$k} && $x =~ $IDENTITY_FIELD{$k};
    $v{$k} = $k eq 'clock_offset_ns' ? $x : pack 'H*', $x;
  }
  return "dropbear loads its host key once (no -R): not replaced here" if exists $v{host_key} && !dropbear_per_connection();
  my $why = '';
  $why ||= clock_shift($v{clock_offset_ns}) if exists $v{clock_offset_ns};
  $why ||= reseed($v{entropy}) if exists $v{entropy};
  if (exists $v{hostname}) {
    $why ||= write_file('/proc/sys/kernel/hostname', "$v{hostname}\n");
    $why ||= write_file('/etc/hostname', "$v{hostname}\n");
  }
  my $umask = umask 077;
  $why ||= write_file("$HOME/.ssh/authorized_keys", "$v{authorized_key}\n") if exists $v{authorized_key};
  if (exists $v{host_key}) {
    mkdir '/etc/dropbear' unless -d '/etc/dropbear';
    $why ||= write_file('/etc/dropbear/dropbear_ed25519_host_key', $v{host_key});
  }
  umask $umask;
  return $why;
}

sub clock_shift {    # CLOCK_REALTIME += a signed offset in ns: read and set in one go
  my ($neg, $s, $ns) = $_[0] =~ /\A(-?)([0-9]*?)([0-9]{1,9})\z/;
  my $ts = "\0" x 16;
  syscall($SYS->[3], 0, $ts) == 0 or return "clock_gettime: $!";
  my ($sec, $nsec) = unpack 'q<q<', $ts;
  my $sign = $neg ? -1 : 1;
  $sec += $sign * ($s || 0);
  $nsec += $sign * $ns;
  if ($nsec < 0) { $nsec += 1_000_000_000; $sec-- }
  elsif ($nsec >= 1_000_000_000) { $nsec -= 1_000_000_000; $sec++ }
  $ts = pack 'q<q<', $sec, $nsec;
  syscall($SYS->[4], 0, $ts) == 0 or return "setting the clock: clock_settime: $!";
  return '';
}

sub reseed {
  open my $r, '>', '/dev/urandom' or return "/dev/urandom: $!";
  defined syswrite $r, $_[0] or return "writing /dev/urandom: $!";
  ioctl $r, 0x5207, 0 or return "reseeding the kernel RNG: RNDRESEEDCRNG: $!";
  close $r;
  return '';
}

sub write_file {    # in place (no rename: nothing else logs in meanwhile, and a clone that fails here is deleted)
  my ($path, $data) = @_;
  open my $f, '>', $path or return "$path: $!";
  binmode $f;
  print {$f} $data or return "$path: $!";
  close $f or return "$path: $!";
  return '';
}

sub dropbear_per_connection {
  open my $p, '<', '/run/dropbear.pid' or return 0;
  my $pid = <$p> // '';
  chomp $pid;
  return 0 unless $pid =~ /\A[0-9]+\z/;
  open my $c, '<', "/proc/$pid/cmdline" or return 0;
  local $/;
  my $argv = <$c> // '';
  return scalar grep { $_ eq '-R' } split /\0/, $argv;
}

sub dispatch {
  my ($t, $id, $payload) = @_;
  if ($t eq 's') {
    start($id, (delete($pending{$id}) // '') . $payload);
  } elsif ($t eq 'a') {
    $pending{$id} .= $payload;
  } elsif ($t eq 'i') {
    my $j = $jobs{$id};
    return unless $j && $j->{in};
    # fed after the whole read is parsed (one write to the pipe, not one per frame)
    if (length $payload) { $j->{inbuf} .= $payload } else { $j->{ineof} = 1 }
  } elsif ($t eq 'k') {
    my $j = $jobs{$id};
    kill $payload, -$j->{pid} if $j && $payload =~ /\A[0-9]{1,2}\z/;
  } elsif ($t eq 'p') {
    # `v` is a host attaching (a daemon that started): what an earlier one held, nobody will let go; it has
    # not beaten yet
    if ($payload eq 'v') { $_->{held} = 0 for values %jobs; $beats = 0 }
    $beats = 1 if $payload eq 'b';
    put('p', $id, $payload eq 'v' ? ($SYS ? '3' : '1') : '');
  } elsif ($t eq 'h' || $t eq 'g') {
    my $j = $jobs{$id};
    $j->{held} = $t eq 'h' if $j;
  } elsif ($t eq 'c' && $SYS) {
    my $ts = "\0" x 16;
    put('c', $id, syscall($SYS->[3], 0, $ts) == 0 ? sprintf('%d.%09d', unpack 'q<q<', $ts) : '');
  } elsif ($t eq 'I' && $SYS) {
    my $why = identity((delete($pending{$id}) // '') . $payload);
    put($why ? 'r' : 'x', $id, $why || '0');
  }
  # other letters: a later host's frames, ignored whole
}

sub parse {    # every complete frame in $rbuf
  while (1) {
    if ($skipping) {
      my $nl = index $rbuf, "\n";
      if ($nl < 0) {
        # keep a partial line only while it can still become `sync`
        if (length $rbuf > 4) { $rbuf = ''; $midline = 1 }
        return;
      }
      my $line = substr $rbuf, 0, $nl + 1, '';
      $skipping = 0 if !$midline && $line eq "sync\n";
      $midline = 0;
      next;
    }
    my $nl = index $rbuf, "\n";
    if ($nl < 0) {
      $skipping = 1 if length $rbuf > 48;    # no header is this long
      return if !$skipping;
      next;
    }
    my $line = substr $rbuf, 0, $nl;
    if ($line eq 'sync') { substr($rbuf, 0, $nl + 1, ''); next }
    my ($t, $id, $n) = $line =~ /\A([A-Za-z]) ([0-9a-z]{1,32}) ([0-9]{1,4})\z/;
    if (!defined $t || $n > $MAX_PAYLOAD) {
      substr($rbuf, 0, $nl + 1, '');
      $skipping = 1;
      next;
    }
    my $trailer = ".$id\n";
    my $need = $nl + 1 + $n + length $trailer;
    return if length $rbuf < $need;
    my $frame = substr $rbuf, 0, $need, '';
    if (substr($frame, $nl + 1 + $n) ne $trailer) { $skipping = 1; next }
    dispatch($t, $id, substr($frame, $nl + 1, $n));
  }
}

# A host that beats (pings with payload `b`, every 10 s while commands of its run) and then says nothing for
# $HOST_GONE_S is gone (a daemon killed -9): the commands it left are killed, as dropbear's are when their
# connection drops, rather than run on for nobody (a `sleep` would for ever). A host that never beat (an older
# daemon) is never so judged. A paused or restored guest's clock stands still meanwhile.
my $HOST_GONE_S = ($ENV{BANGER_EXEC_AGENT_HOST_GONE_S} // '') =~ /\A[0-9]{1,4}\z/ ? $ENV{BANGER_EXEC_AGENT_HOST_GONE_S} : 60;
my $heard = time;

while (1) {
  reap() if $chld;
  last if $port_eof && !%jobs;
  my ($rin, $win) = ('', '');
  vec($rin, 0, 1) = 1 unless $port_eof;
  vec($rin, $_, 1) = 1 for grep { !$readers{$_}[0]{held} } keys %readers;
  for my $j (values %jobs) { vec($win, fileno $j->{in}, 1) = 1 if $j->{in} && length $j->{inbuf} }
  # Perl runs a SIGCHLD handler between ops, so one arriving just before
  # select(2) starts does not interrupt it: the timeout bounds that wait.
  my ($rout, $wout) = ($rin, $win);
  my $n = select $rout, $wout, undef, %jobs ? 0.25 : undef;
  if ($n < 0) { next if $! == $EINTR; die "select: $!" }
  $chld = 1 if $n == 0;
  if (vec $rout, 0, 1) {
    my $got = sysread STDIN, $rbuf, 65536, length $rbuf;
    if (defined $got && $got == 0) { $port_eof = 1 }
    elsif ($got) {
      $heard = time;
      parse();
      for my $j (values %jobs) { feed($j) if $j->{in} && (length $j->{inbuf} || $j->{ineof}) }
    }
  }
  for my $fd (keys %readers) { read_output($fd) if $readers{$fd} && vec $rout, $fd, 1 }
  for my $j (values %jobs) { feed($j) if $j->{in} && vec $wout, fileno $j->{in}, 1 }
  # after the reads: a guest that was not scheduled for a while reads the beats that came meanwhile first
  if ($beats && %jobs && time - $heard > $HOST_GONE_S) {
    kill 'KILL', -$_->{pid} for values %jobs;
    $beats = 0;
  }
}
