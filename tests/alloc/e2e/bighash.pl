# A big hash (60k keys in the test), rebuilt and partly deleted, so perl's SV arenas and hash
# buckets grow and shrink through the allocator.
use strict;
use warnings;
my $n = shift // 60000;
my %h;
for my $i (0 .. $n - 1) {
  $h{"key$i"} = [$i, "v" x ($i % 50), { sq => $i * $i }];
}
my $sum = 0;
$sum += $h{"key$_"}[2]{sq} % 1000 for grep { $_ % 3 } 0 .. $n - 1;
delete $h{"key$_"} for grep { $_ % 2 } 0 .. $n - 1;
my %inv = map { join(",", @{$h{$_}}[0, 1]) => $_ } keys %h;
my @sorted = sort { $a cmp $b } keys %h;
print "keys ", scalar(keys %h), "\n";
print "inv ", scalar(keys %inv), "\n";
print "sum $sum\n";
print "first $sorted[0] last $sorted[-1]\n";
print "join ", length(join("", map { $h{$_}[1] } @sorted)), "\n";
