# A dev server for port tests, run inside a session container: GET /N answers N bytes (and which
# session it is), GET /ws switches protocols and echoes what it gets, as a websocket server would.
use strict;
$| = 1;
use IO::Socket::INET;
$SIG{CHLD} = 'IGNORE';
my $port = shift || 3000;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 128, ReuseAddr => 1) or die "listen: $!";
print "listening on $port\n";
while (my $c = $s->accept) {
  next if fork();
  my $line = <$c>;
  while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
  if ($line =~ m{^GET /ws }) {
    syswrite($c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    while (sysread($c, my $buf, 65536)) { syswrite($c, "echo:$buf") }
    exit 0;
  }
  my $n = $line =~ m{^GET /(\d+)} ? $1 : 5;
  print $c "HTTP/1.1 200 OK\r\nContent-Length: $n\r\nX-Session: $ENV{HOSTNAME}\r\nConnection: close\r\n\r\n";
  my $chunk = 'x' x 65536;
  while ($n > 0) { my $k = $n < 65536 ? $n : 65536; print $c substr($chunk, 0, $k); $n -= $k }
  close $c;
  exit 0;
}
