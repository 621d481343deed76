// Latency of dependent loads over span/stride lines in random order, one line per stride of a
// span (at a random line of its 4 KiB page when stride >= 4096, so the lines spread over the
// cache's sets), with the span on 2 MiB pages (huge = 1) or 4 KiB pages (huge = 0).
//   gcc -O2 -o span span.c && ./span SPAN_BYTES STRIDE_BYTES HUGE
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  size_t span=strtoull(argv[1],0,0), stride=strtoull(argv[2],0,0); int huge=atoi(argv[3]);
  size_t n=span/stride; size_t al=2<<20;
  char*raw=mmap(0,span+al,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  char*b=(char*)(((uintptr_t)raw+al-1)&~(al-1));
  madvise(b,span,huge?MADV_HUGEPAGE:MADV_NOHUGEPAGE);
  memset(b,1,span);
  size_t*perm=malloc(n*sizeof(size_t)); for(size_t i=0;i<n;i++)perm[i]=i;
  srand(1); for(size_t i=n-1;i>0;i--){size_t j=((size_t)rand()*RAND_MAX+rand())%(i+1);size_t t=perm[i];perm[i]=perm[j];perm[j]=t;}
  for(size_t i=0;i<n;i++){ *(char**)(b+perm[i]*stride+ (perm[i]%64)*64*(stride>=4096?1:0)) = b+perm[(i+1)%n]*stride+(perm[(i+1)%n]%64)*64*(stride>=4096?1:0); }
  char*p=b+perm[0]*stride+(perm[0]%64)*64*(stride>=4096?1:0); size_t iters=20000000;
  for(size_t i=0;i<n*2;i++)p=*(char**)p;
  double t0=now(); for(size_t i=0;i<iters;i++)p=*(char**)p; double t1=now();
  FILE*f=fopen("/proc/self/smaps_rollup","r"); char line[256]; long ahp=0; while(fgets(line,256,f)) if(!strncmp(line,"AnonHugePages:",14)) ahp=atol(line+14);
  printf("span %zu KiB stride %zu lines %zu huge %d: %.1f ns/load (AnonHugePages %ld kB) %p\n",span>>10,stride,n,huge,(t1-t0)/iters,ahp,(void*)p);
}
